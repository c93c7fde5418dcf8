"""One admitted socket: a bounded outbox drained by a single writer, and a close request.

Every send, the close frame included, goes through the writer task, so frames never interleave
and a slow client costs at most ``queue_size`` frames of memory: past that it is closed with 4429.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from experience.gate.protocol import CloseCode
from telemetry import record

log = logging.getLogger(__name__)


class Connection:
    """An admitted socket of one session."""

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
        self._outbox: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self._closing = asyncio.Event()
        self.deadline_changed = asyncio.Event()

    @property
    def closing(self) -> bool:
        """Whether a close has been requested."""
        return self._closing.is_set()

    def send(self, frame: dict[str, Any]) -> None:
        """Queue a frame; a client too slow to keep up is closed (4429) instead of buffered."""
        if self.closing:
            return
        try:
            self._outbox.put_nowait(json.dumps(frame, separators=(",", ":")))
        except asyncio.QueueFull:
            log.info("socket %s too slow; closing", self.socket_id)
            self.close(CloseCode.TOO_MANY, "too slow to keep up")

    def close(self, code: int, reason: str = "") -> None:
        """Ask the writer to close the socket with ``code`` (the first request wins)."""
        if self.closing:
            return
        self.close_code = code
        self.close_reason = reason
        self._closing.set()

    @property
    def deadline(self) -> datetime:
        """When the socket must be checked again: the token's or the session's expiry."""
        return min(self.token_exp, self.session_expires_at)

    def extend(self, token_exp: datetime, session_expires_at: datetime) -> None:
        """New expiries (after an in-band refresh or a re-verification)."""
        self.token_exp = token_exp
        self.session_expires_at = session_expires_at
        self.deadline_changed.set()

    async def run_writer(self) -> None:
        """Send queued frames until a close is requested, then send the close frame."""
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            while True:
                getting = asyncio.ensure_future(self._outbox.get())
                done, _ = await asyncio.wait(
                    {getting, closing}, return_when=asyncio.FIRST_COMPLETED
                )
                if getting not in done:
                    getting.cancel()
                    break
                await self.websocket.send_text(getting.result())
                record.frame_out()
        except Exception:  # the peer went away; nothing left to send to
            log.debug("writer of %s stopped", self.socket_id, exc_info=True)
            return
        finally:
            closing.cancel()
        await self._send_close()

    async def _send_close(self) -> None:
        if self.websocket.application_state is WebSocketState.DISCONNECTED:
            return
        try:
            await self.websocket.close(self.close_code or 1000, self.close_reason[:120])
        except Exception:
            log.debug("close of %s failed", self.socket_id, exc_info=True)
