"""Request-reply for typed intents, with every transport failure made a ``RuntimeUnavailable``."""

from __future__ import annotations

import asyncio
import json
import logging
from time import perf_counter
from typing import TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError, TimeoutError
from pydantic import ValidationError

from bus import names
from intents import REPLY_OF, ErrorReply, Intent, Reply
from intents.errors import RuntimeUnavailable, SymphainyError, error_from_wire
from telemetry import tracing
from telemetry.record import intent_sent

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Reply)


def intent_headers(intent: Intent) -> dict[str, str]:
    """NATS headers that let the runtime log the caller's correlation id before parsing."""
    return tracing.inject(
        {names.CORRELATION_HEADER: intent.correlation_id, names.INTENT_ID_HEADER: intent.intent_id}
    )


# A retry-safe intent with no reply by this share of its deadline is sent once more: the worker
# that took it may have died with it, and the queue group hands the copy to a live one.
SECOND_TRY_AT = 0.5


@tracing.sends_intent
async def request(nc: Client, intent: Intent, reply_type: type[R], timeout: float) -> R:
    """``_request``, counted and timed by intent type and outcome code."""
    started = perf_counter()
    try:
        reply = await _request(nc, intent, reply_type, timeout)
    except SymphainyError as exc:
        intent_sent(type(intent).__name__, exc.code, perf_counter() - started)
        raise
    intent_sent(type(intent).__name__, "ok", perf_counter() - started)
    return reply


async def _request(nc: Client, intent: Intent, reply_type: type[R], timeout: float) -> R:
    """Send ``intent`` to the runtime and return its typed reply, or raise its typed error.

    No responders, no reply within ``timeout``, a closed connection: all ``RuntimeUnavailable``,
    raised within ``timeout``. A ``retry_safe`` intent is sent a second time (same intent id)
    when half the time has passed without a reply, so a worker killed mid-request costs a read
    some latency, not an error.
    """
    intent = intent.with_deadline(timeout)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    first = timeout * SECOND_TRY_AT if intent.retry_safe else timeout
    try:
        try:
            msg = await _send(nc, intent, first)
        except TimeoutError:
            left = give_up - loop.time()
            if not intent.retry_safe or left <= 0:
                raise
            log.info("no reply to %s in %.1f s: asking again", intent.intent_id, first)
            msg = await _send(nc, intent, left)
    except NoRespondersError as exc:
        raise RuntimeUnavailable("no runtime worker is running") from exc
    except TimeoutError as exc:
        raise RuntimeUnavailable("no runtime worker answered in time") from exc
    except (ConnectionClosedError, OSError) as exc:
        raise RuntimeUnavailable("not connected to NATS") from exc
    return parse_reply(msg.data, reply_type)


async def _send(nc: Client, intent: Intent, timeout: float) -> Msg:
    return await nc.request(
        intent.subject, intent.to_wire(), timeout=timeout, headers=intent_headers(intent)
    )


async def ask(nc: Client, intent: Intent, timeout: float) -> Reply:
    """``request`` with the reply type looked up from the intent's class."""
    return await request(nc, intent, REPLY_OF[type(intent)], timeout)


def parse_reply(data: bytes, reply_type: type[R]) -> R:
    """Decode a reply: the success model, or the typed error it carries."""
    try:
        # The common case in one pass (an error reply fails ``ok: true`` and is read below).
        return reply_type.model_validate_json(data)
    except ValidationError:
        pass
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise SymphainyError("runtime sent a reply that is not JSON") from exc
    if isinstance(raw, dict) and raw.get("ok") is False:
        try:
            failed = ErrorReply.model_validate(raw)
        except ValidationError as exc:
            raise SymphainyError("runtime sent a malformed error reply") from exc
        raise error_from_wire(failed.error.code, failed.error.message, failed.error.retry_after_s)
    try:
        return reply_type.model_validate(raw)
    except ValidationError as exc:
        log.error("unexpected reply for %s: %s", reply_type.__name__, exc)
        raise SymphainyError("runtime sent an unexpected reply") from exc
