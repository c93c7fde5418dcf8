"""The gate's agent channel keeps a socket's frames in order: ack, events, then the result,
even when the runtime answers before JetStream's PubAck reaches the gate."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from bus import names
from experience.gate.agent import AgentChannel
from experience.gate.connection import Connection
from intents import AgentEvent, AgentResult, RunAgent
from intents.agent import CancelAgentRun

EXP = datetime(2030, 1, 1, tzinfo=UTC)


class RacingJetStream:
    """A publish whose PubAck comes back only after the runtime's replies were delivered."""

    def __init__(self, deliver: Any) -> None:
        self.deliver = deliver

    async def publish(self, subject: str, payload: bytes, **_: Any) -> None:
        await self.deliver(RunAgent.model_validate_json(payload))


class RecordingSocket:
    """A client that takes every frame at once."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(text)


async def outbox(conn: Connection) -> list[dict[str, Any]]:
    """The frames the socket was sent, once everything queued has gone out."""
    await conn.drained(timeout=1.0)
    return [json.loads(text) for text in conn.websocket.sent]  # type: ignore[attr-defined]


async def test_replies_that_overtake_the_ack_are_sent_after_it() -> None:
    conn = idle_conn()
    channel: AgentChannel

    async def runtime_answers_at_once(intent: RunAgent) -> None:
        for reply in (
            AgentEvent(
                intent_id=intent.intent_id,
                client_id=intent.client_id,
                correlation_id=intent.correlation_id,
                data={"item": 1},
            ),
            AgentResult(
                intent_id=intent.intent_id,
                client_id=intent.client_id,
                correlation_id=intent.correlation_id,
                ok=True,
                data={"items": [1]},
            ),
        ):
            msg = SimpleNamespace(
                subject=names.agent_reply_subject("gate", "sock"),
                data=reply.model_dump_json().encode(),
            )
            await channel._on_reply(msg)  # type: ignore[arg-type]

    gate = SimpleNamespace(
        gate_id="gate",
        nc=SimpleNamespace(jetstream=lambda: RacingJetStream(runtime_answers_at_once)),
        settings=SimpleNamespace(request_timeout_s=1.0, agent_deadline_s=10.0),
        registry=SimpleNamespace(get=lambda socket_id: conn if socket_id == "sock" else None),
    )
    channel = AgentChannel(gate)  # type: ignore[arg-type]

    frame = {"type": "intent", "id": "1", "intent": "echo", "payload": {"items": [1]}}
    await channel.on_frame(conn, json.dumps(frame))

    assert [f["type"] for f in (await outbox(conn))] == ["ack", "event", "result"]
    assert conn.in_flight == set()
    assert conn.unacked == {}


def idle_conn() -> Connection:
    return Connection(
        RecordingSocket(),  # type: ignore[arg-type]
        socket_id="sock",
        session_id="a" * 32,
        user_id="b" * 32,
        token_exp=EXP,
        session_expires_at=EXP,
        queue_size=16,
        max_in_flight=4,
    )


INTENT = '{"type": "intent", "id": "x", "intent": "echo", "payload": %s}'


@pytest.mark.parametrize(
    "text",
    [
        "[" * 10_000 + "]" * 10_000,  # deeper than any parser's stack
        INTENT % ('{"a": ' + "[" * 10_000 + "]" * 10_000 + "}"),
        '{"id": "x", "nest": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}",
        INTENT % ('{"n": ' + "9" * 5000 + "}"),  # more digits than Python converts
        INTENT % '{"n": 1e999}',  # infinity
        INTENT % '{"n": NaN}',
        INTENT % '{"s": "\\ud800"}',  # a lone surrogate
        INTENT % "[]",  # wrong type
        '{"type": "intent", "id": 7, "intent": "echo"}',
        "not json",
        "",
    ],
)
async def test_every_unparseable_frame_gets_an_error_frame(text: str) -> None:
    conn = idle_conn()
    channel = AgentChannel(SimpleNamespace())  # type: ignore[arg-type]
    await channel.on_frame(conn, text)
    [frame] = await outbox(conn)
    assert (frame["type"], frame["code"]) == ("error", "invalid_frame")
    assert not conn.closing


async def test_a_closed_sockets_runs_are_cancelled() -> None:
    conn = idle_conn()
    conn.in_flight.update({"i1", "i2"})
    published: list[tuple[str, bytes]] = []

    async def publish(subject: str, payload: bytes, **_: Any) -> None:
        published.append((subject, payload))

    channel = AgentChannel(SimpleNamespace(nc=SimpleNamespace(publish=publish)))  # type: ignore[arg-type]
    await channel.cancel_runs(conn)
    [(subject, payload)] = published
    cancel = CancelAgentRun.model_validate_json(payload)
    assert subject == names.AGENT_CANCEL
    assert (cancel.session_id, set(cancel.intent_ids)) == (conn.session_id, {"i1", "i2"})
    await channel.cancel_runs(conn)  # nothing left in flight: nothing sent
    assert len(published) == 1
