"""``intents tail``'s lines: ids, outcome and latency only, an intent before its audit record."""

from __future__ import annotations

import asyncio
import io

from bus import names
from intents import AuthenticateUser, VerifySession
from symphainy.tail import Filter, Tail

SESSION = "a" * 32
USER = "b" * 32


def headers(correlation_id: str, intent_id: str, outcome: str | None = None) -> dict[str, str]:
    found = {names.CORRELATION_HEADER: correlation_id, names.INTENT_ID_HEADER: intent_id}
    if outcome is not None:
        found[names.OUTCOME_HEADER] = outcome
    return found


async def test_an_audit_record_that_overtook_its_intent_is_printed_after_it() -> None:
    out = io.StringIO()
    tail = Tail(out, Filter())
    verify = VerifySession(session_id=SESSION, user_id=USER, correlation_id="c1")
    audit = asyncio.create_task(
        tail.on_message(
            names.audit_subject(verify.subject),
            headers("c1", verify.intent_id, "ok"),
            verify.to_audit(),
        )
    )
    await asyncio.sleep(0)  # the audit record is waiting for its intent
    await tail.on_message(verify.subject, headers("c1", verify.intent_id), verify.to_wire())
    await audit
    intent_line, audit_line = out.getvalue().splitlines()
    assert intent_line.split()[1:] == [
        "intent", verify.subject, "VerifySession", "corr=c1", f"id={verify.intent_id}"
    ]  # fmt: skip
    assert audit_line.split()[1:6] == [
        "audit", verify.subject, "VerifySession", "corr=c1", f"id={verify.intent_id}"
    ]  # fmt: skip
    assert audit_line.split()[6] == "ok"


async def test_no_body_is_printed_and_filters_apply() -> None:
    out = io.StringIO()
    tail = Tail(out, Filter(family="user", correlation_id="c2"))
    login = AuthenticateUser(username="alice", password="hunter2-secret", correlation_id="c2")
    other = AuthenticateUser(username="bob", password="p", correlation_id="c3")
    for intent in (login, other):
        await tail.on_message(
            names.audit_subject(intent.subject),
            headers(intent.correlation_id, intent.intent_id, "invalid_credentials"),
            intent.to_wire(),  # even were a body to carry the password, it is not printed
        )
    verify = VerifySession(session_id=SESSION, user_id=USER, correlation_id="c2")
    await tail.on_message(verify.subject, headers("c2", verify.intent_id), verify.to_wire())
    [line] = out.getvalue().splitlines()
    assert "hunter2" not in line
    assert "alice" not in line
    assert " audit  credentials.user.authenticate AuthenticateUser corr=c2 " in line
    assert " invalid_credentials " in line
    assert line.endswith(" since issued")


async def test_hostile_ids_cannot_forge_a_line() -> None:
    out = io.StringIO()
    await Tail(out, Filter()).on_message("intents.session.get", headers("x\ny\x1b[31m", "i"), b"{")
    assert out.getvalue().count("\n") == 1
    assert "\x1b" not in out.getvalue()
