"""The dispatcher: every failure becomes a typed reply, never an exception or silence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from intents import Ping, PingReply, SessionNotFound, utcnow
from runtime_worker.dispatch import execute
from runtime_worker.kv import StoreUnavailable

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def clock() -> datetime:
    return NOW


async def answer(intent: Ping, now: datetime) -> PingReply:
    assert now == NOW
    return PingReply(worker_id="w")


def body(outcome: object) -> dict[str, object]:
    return json.loads(outcome.reply.model_dump_json())  # type: ignore[attr-defined, no-any-return]


async def test_success() -> None:
    outcome = await execute(Ping().to_wire(), Ping, answer, clock)
    assert outcome.code == "ok"
    assert body(outcome) == {"ok": True, "worker_id": "w"}


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b'{"intent_id": 5}', b'{"bogus": 1}'])
async def test_malformed_intent_is_a_typed_error(data: bytes) -> None:
    outcome = await execute(data, Ping, answer, clock)
    assert outcome.intent is None
    assert body(outcome)["error"]["code"] == "invalid_intent"  # type: ignore[index]


async def test_past_deadline_is_not_executed() -> None:
    late = Ping(deadline=utcnow() - timedelta(seconds=1))

    async def must_not_run(intent: Ping, now: datetime) -> PingReply:
        raise AssertionError("executed past its deadline")

    outcome = await execute(late.to_wire(), Ping, must_not_run, clock)
    assert outcome.code == "deadline_exceeded"


async def test_our_errors_keep_their_code() -> None:
    async def missing(intent: Ping, now: datetime) -> PingReply:
        raise SessionNotFound()

    outcome = await execute(Ping().to_wire(), Ping, missing, clock)
    assert body(outcome)["error"] == {
        "code": "session_not_found",
        "message": "session not found",
        "retryable": False,
    }


async def test_a_crash_is_a_generic_error_without_internals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def crash(intent: Ping, now: datetime) -> PingReply:
        raise ValueError("secret internal detail")

    outcome = await execute(Ping().to_wire(), Ping, crash, clock)
    assert body(outcome)["error"] == {
        "code": "internal",
        "message": "internal error",
        "retryable": False,
    }
    assert "secret internal detail" in caplog.text


async def test_store_outage_is_retryable_unavailable() -> None:
    async def outage(intent: Ping, now: datetime) -> PingReply:
        raise StoreUnavailable("leader election")

    outcome = await execute(Ping().to_wire(), Ping, outage, clock)
    assert body(outcome)["error"]["code"] == "runtime_unavailable"  # type: ignore[index]
    assert body(outcome)["error"]["retryable"] is True  # type: ignore[index]
