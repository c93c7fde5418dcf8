"""User intents end to end, and the audit trail they leave (passwords never in it)."""

from __future__ import annotations

import json

import pytest
from nats.aio.client import Client

from bus import names
from intents import (
    AuthenticateUser,
    AuthenticateUserReply,
    AuthenticationFailed,
    CreateSession,
    CreateUser,
    CreateUserReply,
    ListSessions,
    ListSessionsReply,
    ListUsers,
    ListUsersReply,
    RemoveUser,
    RemoveUserReply,
    UserExists,
    UserNotFound,
)
from intents.request import ask
from runtime_worker.app import Worker

T = 2.0
PASSWORD = "correct horse battery staple"


async def test_users_end_to_end(nc: Client, worker: Worker) -> None:
    created = await ask(nc, CreateUser(username="alice", password=PASSWORD), T)  # type: ignore[arg-type]
    assert isinstance(created, CreateUserReply)
    with pytest.raises(UserExists):
        await ask(nc, CreateUser(username="Alice", password="x"), T)  # type: ignore[arg-type]
    ok = await ask(nc, AuthenticateUser(username="alice", password=PASSWORD), T)  # type: ignore[arg-type]
    assert isinstance(ok, AuthenticateUserReply)
    assert ok.user.id == created.user.id
    for name, pw in [("alice", "nope"), ("mallory", PASSWORD)]:
        with pytest.raises(AuthenticationFailed):
            await ask(nc, AuthenticateUser(username=name, password=pw), T)  # type: ignore[arg-type]
    listed = await ask(nc, ListUsers(), T)
    assert isinstance(listed, ListUsersReply)
    assert [u.username for u in listed.users] == ["alice"]

    await ask(nc, CreateSession(user_id=ok.user.id, username="alice"), T)
    removed = await ask(nc, RemoveUser(username="alice"), T)
    assert isinstance(removed, RemoveUserReply)
    assert len(removed.revoked_sessions) == 1
    live = await ask(nc, ListSessions(user_id=ok.user.id), T)
    assert isinstance(live, ListSessionsReply)
    assert live.sessions == []
    with pytest.raises(UserNotFound):
        await ask(nc, RemoveUser(username="alice"), T)


async def test_users_bucket_holds_hashes_not_passwords(nc: Client, worker: Worker) -> None:
    await ask(nc, CreateUser(username="bob", password=PASSWORD), T)  # type: ignore[arg-type]
    kv = await nc.jetstream().key_value(names.USERS_BUCKET)
    record = json.loads((await kv.get("bob")).value)
    assert record["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in json.dumps(record)


async def test_audit_stream_records_intents_with_outcome_and_no_secret(
    nc: Client, worker: Worker
) -> None:
    await ask(nc, CreateUser(username="carol", password=PASSWORD), T)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationFailed):
        await ask(nc, AuthenticateUser(username="carol", password="wrong-" + PASSWORD), T)  # type: ignore[arg-type]
    js = nc.jetstream()
    info = await js.stream_info(names.INTENTS_STREAM)
    assert info.config.no_ack is True
    assert info.config.subjects == [names.AUDIT_ALL]
    sub = await js.subscribe(names.AUDIT_ALL, stream=names.INTENTS_STREAM, ordered_consumer=True)
    records = [await sub.next_msg(timeout=2) for _ in range(info.state.messages)]
    await sub.unsubscribe()
    outcomes = {(m.subject, m.headers[names.OUTCOME_HEADER]) for m in records if m.headers}
    assert (names.audit_subject(names.USER_CREATE), "ok") in outcomes
    assert (names.audit_subject(names.USER_AUTHENTICATE), "invalid_credentials") in outcomes
    for message in records:
        assert PASSWORD.encode() not in message.data
        assert json.loads(message.data)["correlation_id"]


async def test_password_intents_stay_out_of_the_intents_subjects(
    nc: Client, worker: Worker
) -> None:
    seen: list[bytes] = []

    async def collect(msg: object) -> None:
        seen.append(msg.data)  # type: ignore[attr-defined]

    sub = await nc.subscribe(names.INTENTS_ALL, cb=collect)
    await ask(nc, CreateUser(username="dave", password=PASSWORD), T)  # type: ignore[arg-type]
    await ask(nc, ListUsers(), T)
    await nc.flush()
    await sub.unsubscribe()
    assert any(b"intent_id" in data for data in seen)  # ListUsers was seen ...
    assert all(PASSWORD.encode() not in data for data in seen)  # ... the password never was.
