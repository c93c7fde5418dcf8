"""From raw message to typed reply: parse, check the deadline, run the handler, audit.

This is the one place where an exception becomes an error reply. A handler that raises one of
our errors answers with its code; anything else is logged with its traceback and answered as a
generic internal error. The caller always gets a reply.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from time import perf_counter
from typing import Generic, TypeVar

from nats.aio.client import Client
from pydantic import BaseModel, ValidationError

from bus import names
from intents import ErrorReply, Intent, Reply, utcnow
from intents.errors import DeadlineExceeded, InvalidIntent, RuntimeUnavailable, SymphainyError
from runtime_worker.kv import StoreUnavailable
from runtime_worker.stats import IntentStats
from telemetry import context, tracing

log = logging.getLogger(__name__)

I = TypeVar("I", bound=Intent)  # noqa: E741
Clock = Callable[[], datetime]
Handler = Callable[[I, datetime], Awaitable[Reply]]


def describe(exc: ValidationError) -> str:
    """A validation failure in words, without echoing input (it may hold a password)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class Outcome(Generic[I]):
    """The parsed intent (if it parsed) and the reply to send."""

    __slots__ = ("intent", "reply")

    def __init__(self, intent: I | None, reply: BaseModel) -> None:
        self.intent = intent
        self.reply = reply

    @property
    def code(self) -> str:
        """``ok`` or the error code, for logs and the audit header."""
        return self.reply.error.code if isinstance(self.reply, ErrorReply) else "ok"


async def execute(
    data: bytes, intent_type: type[I], handler: Handler[I], clock: Clock
) -> Outcome[I]:
    """Run ``handler`` on the intent in ``data``; never raises."""
    try:
        intent = intent_type.model_validate_json(data)
    except ValidationError as exc:
        return Outcome(None, ErrorReply.from_error(InvalidIntent(describe(exc))))
    if intent.expired(utcnow()):
        return Outcome(intent, ErrorReply.from_error(DeadlineExceeded()))
    try:
        reply: BaseModel = await handler(intent, clock())
    except SymphainyError as exc:
        reply = ErrorReply.from_error(exc)
    except StoreUnavailable as exc:
        log.warning("state surface unavailable [%s]: %s", intent.correlation_id, exc)
        reply = ErrorReply.from_error(RuntimeUnavailable("state surface unavailable"))
    except Exception:
        log.exception("handler for %s failed [%s]", intent_type.__name__, intent.correlation_id)
        reply = ErrorReply.from_error(SymphainyError())
    return Outcome(intent, reply)


class Dispatcher:
    """Executes intents for the subscribers and writes the audit record of each write and of
    every failure (a read that succeeds changes nothing and is only counted)."""

    def __init__(self, nc: Client, clock: Clock, concurrency: int = 1) -> None:
        self._nc = nc
        self._clock = clock
        self.concurrency = concurrency
        self.stats = IntentStats()

    @tracing.executes_intent
    async def handle(
        self,
        data: bytes,
        headers: Mapping[str, str] | None,
        intent_type: type[I],
        handler: Handler[I],
    ) -> bytes:
        """The JSON reply to the intent in ``data``."""
        started = perf_counter()
        correlation_id = (headers or {}).get(names.CORRELATION_HEADER, "-")
        context.correlation_id.set(correlation_id)  # each intent runs in a task of its own
        outcome = await execute(data, intent_type, handler, self._clock)
        tracing.record_outcome(outcome.code)
        if outcome.intent is None:
            log.info("rejected malformed %s [%s]", intent_type.__name__, correlation_id)
        else:
            if outcome.code != "ok":
                log.info(
                    "%s %s -> %s [%s]",
                    intent_type.__name__,
                    outcome.intent.intent_id,
                    outcome.code,
                    outcome.intent.correlation_id,
                )
            if outcome.code != "ok" or not intent_type.reads_only:
                await audit(self._nc, outcome.intent, outcome.code)
        self.stats.record(intent_type, outcome.code, started)
        return outcome.reply.model_dump_json().encode()


async def audit(nc: Client, intent: Intent, code: str) -> None:
    """Record an executed intent (secrets redacted) with its outcome; never raises."""
    try:
        await nc.publish(
            names.audit_subject(intent.subject),
            intent.to_audit(),
            headers={
                names.CORRELATION_HEADER: intent.correlation_id,
                names.INTENT_ID_HEADER: intent.intent_id,
                names.OUTCOME_HEADER: code,
            },
        )
    except Exception:  # the audit must never cost the caller its reply
        log.warning("could not write the audit record of %s", intent.intent_id, exc_info=True)
