"""One admitted socket: a bounded outbox, flushed by a task that exists only while there is
something to send, and a timer for its deadline.

Every send, the close frame included, goes through the outbox in order, so frames never
interleave, and a slow client costs at most ``queue_size`` frames of memory: past that it is
closed with 4429. An idle socket holds no task of its own (a writer and a watchdog task per
socket were about 15 KB of the RSS of each of 10,000 idle sockets; bench/socket_rss.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from experience.gate.protocol import CloseCode
from intents import utcnow
from telemetry import record

log = logging.getLogger(__name__)


class Connection:
    """An admitted socket of one session."""

    # Ten thousand idle sockets are ten thousand of these: no __dict__, no outbox until used.
    __slots__ = (
        "_close_sent",
        "_dead",
        "_flusher",
        "_on_due",
        "_outbox",
        "_queue_size",
        "_timer",
        "close_code",
        "close_reason",
        "in_flight",
        "max_in_flight",
        "session_expires_at",
        "session_id",
        "socket_id",
        "token_exp",
        "unacked",
        "user_id",
        "websocket",
    )  # fmt: skip

    def __init__(
        self,
        websocket: WebSocket,
        socket_id: str,
        session_id: str,
        user_id: str,
        token_exp: datetime,
        session_expires_at: datetime,
        queue_size: int,
        max_in_flight: int,
    ) -> None:
        self.websocket = websocket
        self.socket_id = socket_id
        self.session_id = session_id
        self.user_id = user_id
        self.token_exp = token_exp
        self.session_expires_at = session_expires_at
        self.max_in_flight = max_in_flight
        self.in_flight: set[str] = set()
        # Replies that overtook their ack (the runtime answered before JetStream's PubAck came
        # back), by intent id: sent right after the ack, so the client always sees ack first.
        self.unacked: dict[str, list[dict[str, Any]]] = {}
        self.close_code: int | None = None
        self.close_reason = ""
        self._queue_size = queue_size
        self._outbox: deque[str] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._close_sent = False
        self._dead = False  # a send failed: the peer is gone
        self._on_due: Callable[[Connection], None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def closing(self) -> bool:
        """Whether a close has been requested."""
        return self.close_code is not None

    def send(self, frame: dict[str, Any]) -> None:
        """Queue a frame; a client too slow to keep up is closed (4429) instead of buffered."""
        if self.closing or self._dead:
            return
        if self._outbox is None:
            self._outbox = deque()
        if len(self._outbox) >= self._queue_size:
            log.info("socket %s too slow; closing", self.socket_id)
            self._outbox.clear()  # it could not take them; the close goes out first
            self.close(CloseCode.TOO_MANY, "too slow to keep up")
            return
        self._outbox.append(json.dumps(frame, separators=(",", ":")))
        self._kick()

    def close(self, code: int, reason: str = "") -> None:
        """Close the socket with ``code`` after the frames already queued (the first wins)."""
        if self.closing:
            return
        self.close_code = code
        self.close_reason = reason
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._kick()

    async def drained(self, timeout: float | None = None) -> None:
        """Wait (at most ``timeout`` seconds) until everything queued, close included, is sent."""
        flusher = self._flusher
        if flusher is not None:
            await asyncio.wait({flusher}, timeout=timeout)

    @property
    def deadline(self) -> datetime:
        """When the socket must be checked again: the token's or the session's expiry."""
        return min(self.token_exp, self.session_expires_at)

    def watch_deadline(self, on_due: Callable[[Connection], None]) -> None:
        """Call ``on_due(self)`` when the deadline passes (again after each ``extend``)."""
        self._on_due = on_due
        self._arm()

    def extend(self, token_exp: datetime, session_expires_at: datetime) -> None:
        """New expiries (after an in-band refresh or a re-verification)."""
        self.token_exp = token_exp
        self.session_expires_at = session_expires_at
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_due is None or self.closing:
            return
        delay = max(0.0, (self.deadline - utcnow()).total_seconds())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_due, self)

    def _kick(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while True:
                while self._outbox:
                    await self.websocket.send_text(self._outbox.popleft())
                    record.frame_out()
                if self.closing and not self._close_sent:
                    self._close_sent = True
                    await self._send_close()
                    continue
                return  # no await since the checks: a frame queued now starts a new flusher
        except Exception:  # the peer went away; nothing left to send to
            log.debug("writer of %s stopped", self.socket_id, exc_info=True)
            self._outbox = None
            self._dead = self._close_sent = True
        finally:
            self._flusher = None

    async def _send_close(self) -> None:
        if self.websocket.application_state is WebSocketState.DISCONNECTED:
            return
        try:
            await self.websocket.close(self.close_code or 1000, self.close_reason[:120])
        except Exception:
            log.debug("close of %s failed", self.socket_id, exc_info=True)
