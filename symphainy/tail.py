"""``symphainy intents tail``: the intents on the bus and their audit records, live, one line each.

It connects as the ``inspector`` role, which may watch ``intents.>`` and ``audit.>`` and never
``credentials.>``: the intents that carry a password are seen only through their audit record,
which the runtime has already redacted. No body is ever printed, only the subject, the intent
type, its ids, and for an audit record the outcome and the latency: from the intent seen here to
its audit record when both were (one clock), else from the intent's ``issued_at``.

    2026-11-26T20:39:45.123Z intent intents.session.verify VerifySession corr=... id=...
    2026-11-26T20:39:45.124Z audit  intents.session.verify VerifySession corr=... id=... ok 0.9ms
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from nats.aio.client import Client
from nats.aio.msg import Msg

from bus import names
from bus.connection import BusGuard, PermissionDenied, connect
from bus.identity import IdentityError, identity_for
from bus.permissions import Role
from bus.settings import Settings
from intents.asyncapi import intent_types
from symphainy.logs import escape

CONNECT_TIMEOUT_S = 3.0
# Intents seen but not yet audited, kept to pair with their audit record (oldest dropped first).
PENDING_MAX = 10_000
# How long an audit record that overtook its intent waits for the intent's line.
GRACE_S = 0.25
AUDIT_PREFIX = names.AUDIT_PREFIX


@dataclass(frozen=True)
class Filter:
    """Which lines to show: one intent family (``session``, ``user``...) and/or one correlation."""

    family: str | None = None
    correlation_id: str | None = None

    def admits(self, subject: str, correlation_id: str) -> bool:
        """Whether a record on intent ``subject`` with ``correlation_id`` is shown."""
        parts = subject.split(".")
        if self.family is not None and (len(parts) < 2 or parts[1] != self.family):
            return False
        return self.correlation_id is None or correlation_id == self.correlation_id


class Tail:
    """Turns the messages it is given into lines on ``out``, flushed one by one.

    nats-py runs each subscription's callbacks in a task of its own, so an audit record may be
    handed over before the intent it records, though NATS sent the intent first: the audit line
    waits up to ``GRACE_S`` for its intent's line, so that an intent always comes first.
    """

    def __init__(self, out: TextIO, only: Filter) -> None:
        self.out = out
        self.only = only
        self.types = {cls.subject: cls.__name__ for cls in intent_types()}
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._waiting: dict[str, asyncio.Event] = {}

    async def on_message(self, subject: str, headers: dict[str, str] | None, data: bytes) -> None:
        """Print the line of one message from ``intents.>`` or ``audit.>``, if it is shown."""
        headers = headers or {}
        arrived = time.monotonic()
        audited = subject.startswith(AUDIT_PREFIX)
        intent_subject = subject.removeprefix(AUDIT_PREFIX) if audited else subject
        body = _fields(data)
        correlation_id = headers.get(names.CORRELATION_HEADER) or str(
            body.get("correlation_id", "-")
        )
        intent_id = headers.get(names.INTENT_ID_HEADER) or str(body.get("intent_id", "-"))
        if not self.only.admits(intent_subject, correlation_id):
            return
        fields = [
            intent_subject,
            self.types.get(intent_subject, "?"),
            f"corr={correlation_id}",
            f"id={intent_id}",
        ]
        if not audited:
            self._write("intent", fields)
            self._remember(intent_id, arrived)
            return
        # Intents on credentials.* are never seen here: nothing to wait for.
        if intent_subject.startswith("intents.") and intent_id not in self._seen:
            waiter = self._waiting.setdefault(intent_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), GRACE_S)
            self._waiting.pop(intent_id, None)
        fields.append(headers.get(names.OUTCOME_HEADER, "?"))
        fields.append(self._latency(intent_id, body.get("issued_at"), arrived))
        self._write("audit ", fields)

    def _write(self, kind: str, fields: list[str]) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.out.write(escape(" ".join([now, kind, *fields])) + "\n")
        self.out.flush()

    def _remember(self, intent_id: str, arrived: float) -> None:
        self._seen[intent_id] = arrived
        while len(self._seen) > PENDING_MAX:
            self._seen.popitem(last=False)
        waiter = self._waiting.get(intent_id)
        if waiter is not None:
            waiter.set()

    def _latency(self, intent_id: str, issued_at: object, arrived: float) -> str:
        seen = self._seen.pop(intent_id, None)
        if seen is not None and seen <= arrived:
            return _duration(arrived - seen)
        # Not seen first (a credentials.* intent, or one sent before the tail started): from the
        # sender's clock.
        try:
            issued = datetime.fromisoformat(str(issued_at))
        except ValueError:
            return "-"
        if issued.tzinfo is None:
            return "-"
        return _duration((datetime.now(UTC) - issued).total_seconds()) + " since issued"


def _fields(data: bytes) -> dict[str, Any]:
    """The envelope fields of a body (ids, ``issued_at``); never printed whole."""
    try:
        body = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    return {k: body[k] for k in ("intent_id", "correlation_id", "issued_at") if k in body}


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.1f}ms"
    return f"{seconds:.2f}s"


async def run(settings: Settings, only: Filter, out: TextIO = sys.stdout) -> int:
    """Tail until Ctrl-C (or SIGTERM), or until ``out`` is closed; the exit code."""
    try:
        identity = identity_for(settings, Role.INSPECTOR)
        guard = BusGuard(identity)
        nc = await asyncio.wait_for(
            connect(identity, "symphainy-intents-tail", guard), CONNECT_TIMEOUT_S
        )
    except (IdentityError, PermissionDenied) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (TimeoutError, OSError) as exc:
        print(f"error: cannot reach NATS ({exc or type(exc).__name__})", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tail = Tail(out, only)

    async def on_message(msg: Msg) -> None:
        try:
            await tail.on_message(msg.subject, msg.headers, msg.data)
        except BrokenPipeError:  # the reader went away (``| head``): nothing left to do
            stop.set()

    try:
        await _subscribe(nc, guard, on_message)
        print(f"tailing intents and audit records on {identity.url}", file=sys.stderr, flush=True)
        await stop.wait()
    except PermissionDenied as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await nc.close()
    return 0


async def _subscribe(nc: Client, guard: BusGuard, cb: Any) -> None:
    for subject in (names.INTENTS_ALL, names.AUDIT_ALL):
        await nc.subscribe(subject, cb=cb)
    # A refused subscription is reported before the flush returns.
    await guard.run(nc.flush())
    guard.check()
