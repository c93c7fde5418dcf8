"""The WebSocket gate: admission, live sockets, revocation, expiry, and the agent channel.

One ``Gate`` per Experience Plane process. It holds one watch on the ``sessions`` bucket (a
revocation from anywhere closes the session's sockets here with 4404) and one subscription for
the agent replies addressed to its sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE
from starlette.websockets import WebSocket

from bus import names
from bus.settings import Settings
from experience.gate import protocol
from experience.gate.admission import Admitted, Rejected, TokenVerifier, admit
from experience.gate.agent import AgentChannel
from experience.gate.connection import Connection
from experience.gate.protocol import CloseCode, close_code_for
from experience.gate.registry import LimitExceeded, Registry
from experience.hosts import HostPolicy
from intents import (
    SymphainyError,
    TokenInvalid,
    VerifySession,
    VerifySessionReply,
    new_id,
    utcnow,
)
from intents.request import request
from telemetry import record

log = logging.getLogger(__name__)

_ACTIVE_MARK = b'"state":"active"'
# The watch is an ordered consumer: when its heartbeats stop (NATS restarted and forgot it), it is
# recreated from the last change seen, so nothing is missed. nats-py declares it dead after two
# missed heartbeats; at its default of 5 s a revocation could go unnoticed for up to 20 s.
WATCH_HEARTBEAT_S = 1.0


class Gate:
    """Admits sockets and keeps them honest for as long as they live."""

    def __init__(self, settings: Settings, nc: Client, verify_token: TokenVerifier) -> None:
        self.settings = settings
        self.nc = nc
        self.verify_token = verify_token
        self.hosts = HostPolicy.from_settings(settings)
        self.gate_id = new_id()[:12]
        self.registry = Registry(settings.ws_max_per_session, settings.ws_max_per_user)
        self.agents = AgentChannel(self)
        self._pending_admissions = 0
        self._checks: set[asyncio.Task[None]] = set()
        self._subs: list[Subscription] = []
        self._stopped = False
        self._watch: Subscription | None = None
        self._watch_lock = asyncio.Lock()
        record.sockets_max()

    async def start(self) -> None:
        """Listen for agent replies and watch the sessions bucket.

        The bucket is the runtime's to create: if no runtime has run yet, the watch starts with
        the first admission after one has (``watching``); no socket is admitted before.
        """
        self._subs.append(await self.agents.subscribe())
        if not await self.watching():
            log.warning("no sessions bucket yet: the watch starts once a runtime has created it")

    async def watching(self) -> bool:
        """Whether revocations reach this gate; tries to start the watch if they do not yet.

        Admission asks this before it verifies a session: with the watch started first, a
        revocation that lands after the check is always seen. Until a runtime has created the
        bucket, this is False (and nobody could answer ``VerifySession`` anyway).
        """
        if self._watch is None:
            async with self._watch_lock:
                if self._watch is None:
                    with contextlib.suppress(NatsError):
                        self._watch = await self._subscribe_sessions()
        return self._watch is not None

    async def _subscribe_sessions(self) -> Subscription | None:
        try:
            return await self.nc.jetstream().subscribe(
                names.kv_key_subject(names.SESSIONS_BUCKET),
                cb=self._on_session_change,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
                idle_heartbeat=WATCH_HEARTBEAT_S,
            )
        except NotFoundError:
            return None

    async def stop(self) -> None:
        """Close every socket with 1001 and wait (bounded) for the close frames to go out."""
        if self._stopped:
            return
        self._stopped = True
        conns = self.registry.close_all(CloseCode.GOING_AWAY, "server going away")
        if conns:
            timeout = self.settings.ws_drain_timeout_s
            await asyncio.gather(*(conn.drained(timeout) for conn in conns))
        subs = [*self._subs, *([self._watch] if self._watch is not None else [])]
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_session_change(self, msg: Msg) -> None:
        session_id = msg.subject.rsplit(".", 1)[-1]
        op = (msg.headers or {}).get(KV_OP)
        if op in (KV_DEL, KV_PURGE):
            self.registry.session_ended(session_id, CloseCode.SESSION_GONE)
        elif _ACTIVE_MARK not in msg.data:
            expired = b'"state":"expired"' in msg.data
            code = CloseCode.EXPIRED if expired else CloseCode.SESSION_GONE
            closed = self.registry.session_ended(session_id, code)
            if closed:
                # DEBUG: revoking a user's 1,000 sessions would otherwise log 1,000 lines here.
                log.debug("session %s ended: closed %d socket(s) with %d", session_id, closed, code)

    async def serve(self, websocket: WebSocket) -> None:
        """The whole life of one socket, from handshake to close."""
        correlation_id = new_id()
        if self._stopped:
            await self._reject(websocket, Rejected(CloseCode.GOING_AWAY, "shutting down", None))
            return
        if self._pending_admissions >= self.settings.ws_max_pending_admissions:
            await self._reject(websocket, Rejected(CloseCode.TOO_MANY, "too many admissions", None))
            return
        self._pending_admissions += 1
        try:
            outcome = await admit(
                websocket.scope,
                self.nc,
                self.verify_token,
                self.hosts,
                self.settings.request_timeout_s,
                correlation_id,
                self.watching,
            )
        finally:
            self._pending_admissions -= 1
        if isinstance(outcome, Rejected):
            log.info("socket rejected %d (%s) [%s]", outcome.code, outcome.reason, correlation_id)
            await self._reject(websocket, outcome)
            return
        try:
            self.registry.check_limits(outcome.claims.sid, outcome.claims.sub)
        except LimitExceeded as exc:
            log.info("socket rejected 4429 (%s) [%s]", exc, correlation_id)
            await self._reject(
                websocket, Rejected(CloseCode.TOO_MANY, str(exc), outcome.subprotocol)
            )
            return
        conn = await self._accept(websocket, outcome, correlation_id)
        del outcome  # the socket lives on what the connection holds, not its admission
        await self._run(conn)

    async def _reject(self, websocket: WebSocket, rejected: Rejected) -> None:
        # Accept only to close at once: a pre-accept 403 reaches a browser as a bare 1006.
        record.socket_refused(rejected.code)
        try:
            await websocket.accept(subprotocol=rejected.subprotocol)
            await websocket.close(rejected.code, rejected.reason[:120])
        except Exception:
            log.debug("peer left during rejection", exc_info=True)

    async def _accept(
        self, websocket: WebSocket, admitted: Admitted, correlation_id: str
    ) -> Connection:
        await websocket.accept(subprotocol=admitted.subprotocol)
        conn = Connection(
            websocket,
            socket_id=new_id(),
            session_id=admitted.claims.sid,
            user_id=admitted.claims.sub,
            token_exp=admitted.claims.exp,
            session_expires_at=admitted.session.expires_at,
            queue_size=self.settings.ws_send_queue,
            max_in_flight=self.settings.ws_max_in_flight,
        )
        self.registry.add(conn)
        record.socket_opened()
        conn.watch_deadline(self._deadline_passed)
        log.debug(
            "socket %s admitted for session %s [%s]",
            conn.socket_id,
            conn.session_id,
            correlation_id,
        )
        return conn

    async def _run(self, conn: Connection) -> None:
        try:
            await self._read(conn)
        finally:
            conn.close(1000, "bye")
            record.socket_closed(conn.close_code)
            self.registry.remove(conn)
            # Nobody is left to read what its runs send: stop them (revocation lands here too).
            await self.agents.cancel_runs(conn)
            await conn.drained(self.settings.ws_drain_timeout_s)

    async def _read(self, conn: Connection) -> None:
        while True:
            message = await conn.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            record.frame_in()
            if conn.closing:
                continue
            text = message.get("text")
            if text is None:
                conn.send(protocol.error(None, "invalid_frame", "binary frames are not supported"))
                continue
            if len(text) > self.settings.ws_max_frame_bytes:
                conn.send(protocol.error(None, "invalid_frame", "frame too large"))
                continue
            try:
                await self.agents.on_frame(conn, text)
            except Exception:  # whatever a frame does, the socket stays usable
                log.exception("frame on socket %s failed", conn.socket_id)
                conn.send(protocol.error(None, "internal", "the frame could not be handled"))

    async def verify(
        self, conn: Connection, correlation_id: str, *, jti: str | None = None
    ) -> VerifySessionReply | None:
        """Re-check the socket's session; on failure, close it with the matching code.

        With ``jti`` (a token presented in-band), a superseded token only gets an error frame:
        the socket keeps the token it has.
        """
        try:
            return await request(
                self.nc,
                VerifySession(
                    session_id=conn.session_id,
                    user_id=conn.user_id,
                    jti=jti,
                    correlation_id=correlation_id,
                    actor=f"user:{conn.user_id}",
                ),
                VerifySessionReply,
                self.settings.request_timeout_s,
            )
        except SymphainyError as exc:
            if jti is not None and isinstance(exc, TokenInvalid):
                conn.send(
                    protocol.error(None, "token_invalid", "the new token has been superseded")
                )
                return None
            conn.close(close_code_for(exc), exc.code)
            return None

    def _deadline_passed(self, conn: Connection) -> None:
        """The socket's token or session reached its expiry: close it, or re-check the session
        (it may have been used elsewhere since, pushing its idle deadline)."""
        if conn.closing:
            return
        if conn.token_exp <= utcnow():
            conn.close(CloseCode.EXPIRED, "token expired")
            return
        check = asyncio.get_running_loop().create_task(self._recheck(conn))
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)

    async def _recheck(self, conn: Connection) -> None:
        session = await self.verify(conn, new_id())
        if session is None or conn.closing:
            return
        if session.expires_at <= utcnow():
            conn.close(CloseCode.EXPIRED, "session expired")
        else:
            conn.extend(conn.token_exp, session.expires_at)

    def expiry_of(self, exp: datetime, session: VerifySessionReply) -> dict[str, Any]:
        """The ``refreshed`` frame for new expiries."""
        return protocol.refreshed(min(exp, session.expires_at).isoformat())
