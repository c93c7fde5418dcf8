"""Agents and the run of one agent intent, over an in-memory bucket: no NATS."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bus import names
from intents import (
    AgentResult,
    CreateSession,
    RevokeSession,
    RunAgent,
    RunLimitExceeded,
    SessionState,
    utcnow,
)
from runtime_worker import sessions as h
from runtime_worker.agents import AgentContext, Agents, builtin_agents, run_intent
from runtime_worker.agents.execute import outcome
from runtime_worker.agents.limits import RunBudget
from runtime_worker.kv import MemoryBucket, StoreUnavailable
from runtime_worker.store import IdempotencyStore, SessionStore

ALICE = "a" * 32
BOB = "b" * 32
T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = h.SessionPolicy(
    idle_timeout=timedelta(minutes=30),
    max_lifetime=timedelta(hours=2),
    touch_interval=timedelta(seconds=60),
)


class Emitted:
    """Collects what an agent emits, in order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def __call__(self, data: dict[str, Any]) -> None:
        self.events.append(data)


@pytest.fixture
def store() -> SessionStore:
    return SessionStore(MemoryBucket(), MemoryBucket())


async def open_session(store: SessionStore, user: str = ALICE) -> str:
    reply = await h.create_session(
        CreateSession(user_id=user, username="alice"),
        store,
        IdempotencyStore(MemoryBucket()),
        POLICY,
        T0,
    )
    return reply.session.session_id


def work(session_id: str, agent: str = "echo", user: str = ALICE, **fields: Any) -> RunAgent:
    return RunAgent(
        session_id=session_id,
        user_id=user,
        agent=agent,
        client_id="c1",
        reply_subject=names.agent_reply_subject("gate", "socket"),
        **fields,
    )


async def run(
    intent: RunAgent,
    store: SessionStore,
    agents: Agents | None = None,
    now: datetime = T0,
) -> tuple[AgentResult, list[dict[str, Any]]]:
    emitted = Emitted()
    result = await run_intent(
        intent,
        builtin_agents() if agents is None else agents,
        store,
        POLICY,
        emitted,
        now=now,
        worker_id="w1",
    )
    assert result.intent_id == intent.intent_id
    assert result.client_id == intent.client_id
    assert result.correlation_id == intent.correlation_id
    return result, emitted.events


def code(result: AgentResult) -> str:
    assert result.ok is False
    assert result.error is not None
    return result.error.code


async def test_echo_emits_each_item_then_returns_the_payload(store: SessionStore) -> None:
    sid = await open_session(store)
    payload = {"items": [1, "two", {"three": 3}], "n": 7}
    result, events = await run(work(sid, payload=payload), store)
    assert events == [{"item": 1}, {"item": "two"}, {"item": {"three": 3}}]
    assert result.ok is True
    assert result.data == payload
    assert outcome(result) == "ok"


async def test_echo_without_items_emits_nothing(store: SessionStore) -> None:
    sid = await open_session(store)
    result, events = await run(work(sid, payload={"n": 1}), store)
    assert events == []
    assert result.data == {"n": 1}


async def test_echo_rejects_items_that_are_not_a_list(store: SessionStore) -> None:
    sid = await open_session(store)
    result, events = await run(work(sid, payload={"items": "abc"}), store)
    assert code(result) == "invalid_intent"
    assert result.error is not None
    assert "items" in result.error.message
    assert events == []


async def test_session_agent_reports_the_callers_session(store: SessionStore) -> None:
    sid = await open_session(store)
    result, _ = await run(work(sid, agent="session"), store)
    assert result.ok is True
    assert result.data is not None
    assert result.data["session_id"] == sid
    assert result.data["user_id"] == ALICE
    assert result.data["username"] == "alice"
    assert result.data["state"] == SessionState.ACTIVE.value
    assert datetime.fromisoformat(result.data["expires_at"]) > T0


async def test_unknown_agent_is_a_typed_error(store: SessionStore) -> None:
    sid = await open_session(store)
    result, _ = await run(work(sid, agent="no-such-agent"), store)
    assert code(result) == "agent_not_found"


async def test_revoked_session_gets_an_error_and_the_agent_does_not_run(
    store: SessionStore,
) -> None:
    sid = await open_session(store)
    await h.revoke_session(RevokeSession(session_id=sid), store, T0)
    ran = False

    async def spy(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
        nonlocal ran
        ran = True
        return {}

    result, _ = await run(work(sid, agent="spy"), store, {"spy": spy})
    assert code(result) == "session_revoked"
    assert not ran


async def test_expired_unknown_and_foreign_sessions_are_typed_errors(store: SessionStore) -> None:
    sid = await open_session(store)
    late = T0 + timedelta(hours=1)
    assert code((await run(work(sid), store, now=late))[0]) == "session_expired"
    assert code((await run(work("f" * 32), store))[0]) == "session_not_found"
    other = await open_session(store)
    assert code((await run(work(other, user=BOB), store))[0]) == "session_not_found"


async def test_past_deadline_is_not_run(store: SessionStore) -> None:
    sid = await open_session(store)
    late = work(sid, deadline=utcnow() - timedelta(seconds=1))
    result, _ = await run(late, store)
    assert code(result) == "deadline_exceeded"


async def test_an_agent_outliving_the_deadline_is_cut_short(store: SessionStore) -> None:
    sid = await open_session(store)

    async def forever(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    intent = work(sid, agent="forever", deadline=utcnow() + timedelta(milliseconds=50))
    result, _ = await run(intent, store, {"forever": forever})
    assert code(result) == "deadline_exceeded"
    assert result.error is not None
    assert result.error.retryable is True


async def test_a_crash_is_a_generic_error_without_internals(
    store: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    sid = await open_session(store)

    async def crash(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
        await ctx.emit({"step": 1})
        raise ValueError("secret internal detail")

    intent = work(sid, agent="crash")
    result, events = await run(intent, store, {"crash": crash})
    assert events == [{"step": 1}]
    assert result.error is not None
    assert result.error.model_dump() == {
        "code": "internal",
        "message": "internal error",
        "retryable": False,
    }
    assert "secret internal detail" in caplog.text  # logged, with its traceback
    assert intent.correlation_id in caplog.text


async def test_an_agents_own_timeout_is_not_a_deadline(store: SessionStore) -> None:
    sid = await open_session(store)

    async def times_out(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
        raise TimeoutError

    intent = work(sid, agent="t", deadline=utcnow() + timedelta(minutes=1))
    assert code((await run(intent, store, {"t": times_out}))[0]) == "internal"


@pytest.mark.parametrize("returned", [["not", "a", "dict"], {"when": object()}])
async def test_a_result_that_is_not_json_is_an_internal_error(
    store: SessionStore, returned: Any
) -> None:
    sid = await open_session(store)

    async def bad(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
        return returned  # type: ignore[no-any-return]

    assert code((await run(work(sid, agent="bad"), store, {"bad": bad}))[0]) == "internal"


async def test_store_outage_is_retryable_unavailable(store: SessionStore) -> None:
    sid = await open_session(store)

    async def outage(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
        raise StoreUnavailable("leader election")

    result, _ = await run(work(sid, agent="o"), store, {"o": outage})
    assert code(result) == "runtime_unavailable"
    assert result.error is not None
    assert result.error.retryable is True


async def test_the_context_carries_the_caller_and_the_payload_is_a_copy(
    store: SessionStore,
) -> None:
    sid = await open_session(store)
    seen: list[AgentContext] = []

    async def look(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
        seen.append(ctx)
        payload["mutated"] = True
        return {}

    intent = work(sid, agent="look", payload={"a": 1})
    await run(intent, store, {"look": look})
    (ctx,) = seen
    assert ctx.caller.session_id == sid
    assert ctx.caller.username == "alice"
    assert ctx.worker_id == "w1"
    assert ctx.attempt == 1
    assert intent.payload == {"a": 1}


def test_builtin_agents_are_a_fresh_dict() -> None:
    first = builtin_agents()
    first["extra"] = first["echo"]
    assert set(builtin_agents()) == {"echo", "session"}


@pytest.mark.parametrize(
    ("subject", "ok"),
    [
        (names.agent_reply_subject("g1", "s1"), True),
        ("agent.replies.g1", False),
        ("agent.replies.g1.s1.extra", False),
        ("agent.replies.*.s1", False),
        ("agent.replies.g1.>", False),
        ("agent.replies..s1", False),
        ("intents.session.revoke", False),
        ("audit.agent.replies", False),
    ],
)
def test_only_socket_reply_subjects_are_answered(subject: str, ok: bool) -> None:
    assert names.is_agent_reply_subject(subject) is ok


async def test_an_echo_past_the_event_cap_ends_with_a_limit_error(store: SessionStore) -> None:
    session_id = await open_session(store)
    intent = work(session_id, payload={"items": list(range(100))})
    budget = RunBudget(max_events=10, max_bytes=1024 * 1024)
    sent: list[dict[str, Any]] = []

    async def emit(data: dict[str, Any]) -> None:
        budget.spend(len(repr(data)))
        sent.append(data)

    result = await run_intent(intent, builtin_agents(), store, POLICY, emit, now=T0, worker_id="w1")
    result = budget.settle(intent, result, len(result.model_dump_json()))
    assert len(sent) == 10
    assert code(result) == "run_limit_exceeded"


def test_the_byte_cap_counts_events_and_the_result() -> None:
    intent = work("c" * 32)
    ok = AgentResult(
        intent_id=intent.intent_id,
        client_id=intent.client_id,
        correlation_id=intent.correlation_id,
        ok=True,
        data={},
    )
    budget = RunBudget(max_events=100, max_bytes=1000)
    budget.spend(600)
    with pytest.raises(RunLimitExceeded):
        budget.spend(500)
    with pytest.raises(RunLimitExceeded):
        budget.spend(1)  # once exceeded, always: an agent that swallows it cannot go on
    assert code(budget.settle(intent, ok, 10)) == "run_limit_exceeded"
    fresh = RunBudget(max_events=100, max_bytes=1000)
    fresh.spend(600)
    assert fresh.settle(intent, ok, 400) is ok
    assert code(fresh.settle(intent, ok, 401)) == "run_limit_exceeded"
