"""From a ``RunAgent`` to its ``AgentResult``: deadline, live session, agent lookup, the run.

No broker here: events leave through the ``emit`` the caller passes, the result is returned.
As in the dispatcher, this is where an exception becomes a typed error: ``run_intent`` never
raises (cancellation aside), so every intent gets a result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, TypeVar

from intents import (
    AgentNotFound,
    AgentResult,
    DeadlineExceeded,
    ErrorBody,
    RunAgent,
    RuntimeUnavailable,
    SymphainyError,
    VerifySession,
    utcnow,
)
from runtime_worker.agents.base import AgentContext, Agents, Emit
from runtime_worker.kv import StoreUnavailable
from runtime_worker.sessions import SessionPolicy, verify_session
from runtime_worker.store import SessionStore

log = logging.getLogger(__name__)

T = TypeVar("T")


def succeeded(intent: RunAgent, data: dict[str, Any]) -> AgentResult:
    """The result of work that went well."""
    return AgentResult(
        intent_id=intent.intent_id,
        client_id=intent.client_id,
        correlation_id=intent.correlation_id,
        ok=True,
        data=data,
    )


def failed(intent: RunAgent, exc: SymphainyError) -> AgentResult:
    """The result of work that failed with one of our errors."""
    return AgentResult(
        intent_id=intent.intent_id,
        client_id=intent.client_id,
        correlation_id=intent.correlation_id,
        ok=False,
        error=ErrorBody(code=exc.code, message=exc.message, retryable=exc.retryable),
    )


def outcome(result: AgentResult) -> str:
    """``ok`` or the error code, for logs and the audit header."""
    return result.error.code if result.error is not None else "ok"


async def run_intent(
    intent: RunAgent,
    agents: Agents,
    sessions: SessionStore,
    policy: SessionPolicy,
    emit: Emit,
    *,
    now: datetime,
    worker_id: str,
    attempt: int = 1,
) -> AgentResult:
    """Run the agent the intent names for its (still live) session; never raises."""
    try:
        data = await _run(intent, agents, sessions, policy, emit, now, worker_id, attempt)
        result = succeeded(intent, data)
        result.model_dump_json()  # an agent must return JSON: learn it here, not when sending
    except SymphainyError as exc:
        return failed(intent, exc)
    except StoreUnavailable as exc:
        log.warning("state surface unavailable [%s]: %s", intent.correlation_id, exc)
        return failed(intent, RuntimeUnavailable("state surface unavailable"))
    except Exception:
        log.exception("agent %s failed [%s]", intent.agent, intent.correlation_id)
        return failed(intent, SymphainyError())
    return result


async def _run(
    intent: RunAgent,
    agents: Agents,
    sessions: SessionStore,
    policy: SessionPolicy,
    emit: Emit,
    now: datetime,
    worker_id: str,
    attempt: int,
) -> dict[str, Any]:
    if intent.expired(utcnow()):
        raise DeadlineExceeded()
    # The session may have ended since the gate queued the work (or while no runtime ran).
    caller = await verify_session(
        VerifySession(
            session_id=intent.session_id,
            user_id=intent.user_id,
            correlation_id=intent.correlation_id,
            actor=intent.actor,
        ),
        sessions,
        policy,
        now,
    )
    agent = agents.get(intent.agent)
    if agent is None:
        raise AgentNotFound(f"no agent named {intent.agent!r}")
    ctx = AgentContext(
        intent=intent,
        caller=caller,
        sessions=sessions,
        now=now,
        worker_id=worker_id,
        attempt=attempt,
        emit=emit,
    )
    return await _within(intent.deadline, agent(ctx, dict(intent.payload)))


async def _within(deadline: datetime | None, work: Awaitable[T]) -> T:
    """``work``, cut short with ``DeadlineExceeded`` when the intent's deadline passes."""
    if deadline is None:
        return await work
    try:
        async with asyncio.timeout((deadline - utcnow()).total_seconds()) as scope:
            return await work
    except TimeoutError:
        if scope.expired():
            raise DeadlineExceeded() from None
        raise
