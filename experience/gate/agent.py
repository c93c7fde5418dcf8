"""The agent channel of the gate: client frames in, agent intents out, replies back.

An intent frame becomes a ``RunAgent`` published to the JetStream work queue (acknowledged to
the client once JetStream has stored it); the runtime's events and result come back on this
gate's reply subject and go to exactly the socket that asked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from bus import names
from bus.settings import Settings
from experience.gate import protocol
from experience.gate.connection import Connection
from experience.gate.protocol import ClientFrame, IntentFrame, RefreshFrame
from experience.gate.registry import Registry
from intents import (
    AgentEvent,
    AgentReply,
    AgentResult,
    RunAgent,
    TokenExpired,
    TokenInvalid,
    VerifySessionReply,
)
from intents.agent import CancelAgentRun
from intents.base import new_id
from intents.request import intent_headers
from telemetry import record, tracing

log = logging.getLogger(__name__)

_frames: TypeAdapter[IntentFrame | RefreshFrame] = TypeAdapter(ClientFrame)
_replies: TypeAdapter[AgentEvent | AgentResult] = TypeAdapter(AgentReply)
# Intent ids per ``CancelAgentRun`` (its own bound).
CANCEL_BATCH = 1024


def _describe(exc: ValueError) -> str:
    if not isinstance(exc, ValidationError):
        return "frame: not valid JSON"
    first = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "frame"
    return f"{where}: {first['msg']}"


class Gate(Protocol):
    """What the channel needs of the gate that owns it (``experience.gate.gate.Gate``)."""

    nc: Client
    gate_id: str
    settings: Settings
    registry: Registry
    verify_token: Callable[[str], Any]

    def expiry_of(self, exp: datetime, session: VerifySessionReply) -> dict[str, Any]:
        """The ``expiry`` frame for a token and its session."""
        ...

    async def verify(
        self, conn: Connection, correlation_id: str, *, jti: str | None = None
    ) -> VerifySessionReply | None:
        """The socket's session if live (and ``jti`` its current token), else None."""
        ...


class AgentChannel:
    """Frames of every socket of one gate."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    async def subscribe(self) -> Subscription:
        """Listen for the replies to this gate's sockets."""
        return await self._gate.nc.subscribe(
            names.agent_replies_of_gate(self._gate.gate_id), cb=self._on_reply
        )

    @tracing.receives_frame
    async def on_frame(self, conn: Connection, text: str) -> None:
        """Handle one text frame; a bad one gets an error frame and the socket stays open.

        The parser bounds nesting depth (a deeper frame is a ``ValidationError``, never a
        ``RecursionError``) and refuses numbers Python cannot hold or JSON cannot carry.
        """
        try:
            frame = _frames.validate_json(text)
        except ValueError as exc:  # ValidationError included
            conn.send(protocol.error(_client_id(text), "invalid_frame", _describe(exc)))
            return
        if isinstance(frame, IntentFrame):
            await self._submit(conn, frame)
        else:
            await self._refresh(conn, frame)

    async def _submit(self, conn: Connection, frame: IntentFrame) -> None:
        if len(conn.in_flight) + len(conn.unacked) >= conn.max_in_flight:
            conn.send(protocol.error(frame.id, "too_many_in_flight", "wait for results first"))
            return
        intent = RunAgent(
            session_id=conn.session_id,
            user_id=conn.user_id,
            agent=frame.intent,
            payload=frame.payload,
            client_id=frame.id,
            reply_subject=names.agent_reply_subject(self._gate.gate_id, conn.socket_id),
            correlation_id=new_id(),
            actor=f"user:{conn.user_id}",
        ).with_deadline(self._gate.settings.agent_deadline_s)
        conn.unacked[intent.intent_id] = []
        try:
            await self._gate.nc.jetstream().publish(
                names.AGENT_RUN,
                intent.to_wire(),
                timeout=self._gate.settings.request_timeout_s,
                headers=intent_headers(intent),
            )
        except Exception as exc:
            conn.unacked.pop(intent.intent_id, None)
            record.intent_sent("RunAgent", "runtime_unavailable", None)
            log.warning("agent intent not queued [%s]: %s", intent.correlation_id, exc)
            conn.send(protocol.error(frame.id, "runtime_unavailable", "could not queue the intent"))
            return
        record.intent_sent("RunAgent", "ok", None)
        overtaken = conn.unacked.pop(intent.intent_id, [])
        if not any(f["type"] in ("result", "error") for f in overtaken):
            conn.in_flight.add(intent.intent_id)
        conn.send(
            protocol.ack(frame.id, intent.intent_id) | {"correlation_id": intent.correlation_id}
        )
        for early in overtaken:
            conn.send(early)

    async def cancel_runs(self, conn: Connection) -> None:
        """Ask the workers to stop the closed socket's unfinished runs; never raises.

        Fire and forget: every worker hears it, the one holding a run cancels it, and a run
        still queued is dropped when picked up. Without this, a run would go on for nobody.
        """
        pending = sorted({*conn.in_flight, *conn.unacked})
        conn.in_flight.clear()
        for start in range(0, len(pending), CANCEL_BATCH):
            cancel = CancelAgentRun(
                session_id=conn.session_id,
                intent_ids=tuple(pending[start : start + CANCEL_BATCH]),
                reason=(conn.close_reason or "socket closed")[:200],
                correlation_id=new_id(),
                actor=f"user:{conn.user_id}",
            )
            try:
                await self._gate.nc.publish(
                    names.AGENT_CANCEL, cancel.to_wire(), headers=intent_headers(cancel)
                )
            except Exception as exc:
                log.warning("could not cancel the runs of socket %s: %s", conn.socket_id, exc)
                return
            log.info(
                "cancelling %d run(s) of closed socket %s [%s]",
                len(cancel.intent_ids),
                conn.socket_id,
                cancel.correlation_id,
            )

    async def _refresh(self, conn: Connection, frame: RefreshFrame) -> None:
        try:
            claims = self._gate.verify_token(frame.session_token)
        except TokenExpired:
            conn.send(protocol.error(None, "token_expired", "the new token has expired"))
            return
        except TokenInvalid:
            conn.send(protocol.error(None, "token_invalid", "the new token is invalid"))
            return
        if claims.sid != conn.session_id or claims.sub != conn.user_id:
            conn.send(protocol.error(None, "token_mismatch", "token is for another session"))
            return
        session = await self._gate.verify(conn, new_id(), jti=claims.jti)
        if session is None:
            return
        conn.extend(claims.exp, session.expires_at)
        conn.send(self._gate.expiry_of(claims.exp, session))

    @tracing.receives_agent_reply
    async def _on_reply(self, msg: Msg) -> None:
        socket_id = msg.subject.rsplit(".", 1)[-1]
        conn = self._gate.registry.get(socket_id)
        if conn is None:
            return
        try:
            reply = _replies.validate_json(msg.data)
        except ValidationError:
            log.warning("malformed agent reply on %s", msg.subject)
            return
        frame = _frame_of(reply)
        overtook = conn.unacked.get(reply.intent_id)
        if overtook is not None:
            overtook.append(frame)
            return
        if not isinstance(reply, AgentEvent):
            conn.in_flight.discard(reply.intent_id)
        conn.send(frame)


def _frame_of(reply: AgentEvent | AgentResult) -> dict[str, Any]:
    """The client frame for one agent reply."""
    if isinstance(reply, AgentEvent):
        return protocol.event(reply.client_id, reply.intent_id, reply.data)
    if reply.ok:
        return protocol.result(reply.client_id, reply.intent_id, reply.data, reply.correlation_id)
    return protocol.error(
        reply.client_id,
        reply.error.code if reply.error else "internal",
        reply.error.message if reply.error else "agent failed",
        intent_id=reply.intent_id,
        correlation_id=reply.correlation_id,
    )


def _client_id(text: str) -> str | None:
    """The frame's ``id``, if it has a usable one, so the client can match the error.

    ``from_json`` and not ``json.loads``: the latter recurses in Python and a deep frame
    would raise ``RecursionError`` here, of all places.
    """
    try:
        raw = from_json(text, allow_inf_nan=False)
    except ValueError:
        return None
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) and len(value) <= 128 else None
