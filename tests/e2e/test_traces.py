"""Traces across the bus, from real processes to a real OTLP/HTTP receiver.

One login is one trace: the Experience Plane's HTTP span and its two client spans, the runtime's
two intent spans (children of those) and their KV calls (children of the intent spans). One
socket echo likewise: the frame, the runtime's run, and each event and result delivered back.
Checked on ``symphainy up`` (both services from one process) and on separate processes; without
``OTEL_*`` nothing is exported and no trace context travels on the bus.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nats.aio.msg import Msg
from websockets.asyncio.client import connect

import intents
from bus.connection import connect as nats_connect
from tests.backends import NatsServer
from tests.otlp import OtlpReceiver, ReceivedSpan, trace_of
from tests.processes import PASSWORD, echo, processes, start_component
from tests.secure import SecureBus

pytestmark = pytest.mark.timeout(120)

EXPERIENCE = "symphainy-experience"
RUNTIME = "symphainy-runtime"
SPANS_TIMEOUT_S = 20.0
DEFAULT_OTLP_PORT = 4318  # where the SDK would export if it defaulted to on


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    """A receiver on a free loopback port."""
    started = await OtlpReceiver().start()
    try:
        yield started
    finally:
        await started.stop()


def traced(receiver: OtlpReceiver) -> dict[str, str]:
    """The standard variables pointing at ``receiver``, with spans exported within 50 ms."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }


def _one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan | None:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) <= 1, f"more than one {service} {name}: {found}"
    return found[0] if found else None


def login_trace(spans: list[ReceivedSpan], correlation_id: str) -> list[ReceivedSpan] | None:
    """The login's trace once its HTTP span and both intents' spans on both sides arrived."""
    http = [
        s
        for s in spans
        if s.service == EXPERIENCE
        and s.kind == "server"
        and s.attributes.get("symphainy.correlation_id") == correlation_id
    ]
    if not http:
        return None
    trace = trace_of(spans, http[0].trace_id)
    wanted = [
        (EXPERIENCE, "send AuthenticateUser"),
        (EXPERIENCE, "send CreateSession"),
        (RUNTIME, "process AuthenticateUser"),
        (RUNTIME, "process CreateSession"),
    ]
    if any(_one(trace, service, name) is None for service, name in wanted):
        return None
    return trace


def assert_intent_pair(trace: list[ReceivedSpan], intent: str, parent: ReceivedSpan) -> None:
    """``intent`` sent by the experience under ``parent``, executed by the runtime under the
    send, with KV calls under the execution, all carrying the correlation id."""
    sent = _one(trace, EXPERIENCE, f"send {intent}")
    done = _one(trace, RUNTIME, f"process {intent}")
    assert sent is not None
    assert done is not None
    assert sent.kind == "client"
    assert done.kind == "server"
    assert sent.parent_id == parent.span_id
    assert done.parent_id == sent.span_id
    correlation_id = parent.attributes["symphainy.correlation_id"]
    for span in (sent, done):
        assert span.attributes["symphainy.intent.type"] == intent
        assert span.attributes["symphainy.correlation_id"] == correlation_id
        assert span.attributes["symphainy.outcome"] == "ok"
        assert span.attributes["messaging.destination.name"] == getattr(intents, intent).subject
    kv = [s for s in trace if s.parent_id == done.span_id]
    assert kv, f"no KV call under {intent}"
    for call in kv:
        assert call.service == RUNTIME
        assert call.name.startswith("kv ")
        assert call.kind == "client"
        assert call.attributes["symphainy.kv.bucket"]


def assert_no_secret(spans: list[ReceivedSpan], secret: str) -> None:
    """``secret`` in no attribute, resource attribute or name of any span."""
    for span in spans:
        text = json.dumps([span.name, span.attributes, span.resource], default=str)
        assert secret not in text, f"the password is in {span.service} {span.name}"


async def check_login(receiver: OtlpReceiver, url: str, username: str, password: str) -> None:
    """Log in and check the login's trace."""
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
    assert response.status_code == 200, response.text
    correlation_id = response.headers["X-Correlation-Id"]
    trace = await receiver.wait_for(lambda s: login_trace(s, correlation_id), SPANS_TIMEOUT_S)

    assert {s.trace_id for s in trace} == {trace[0].trace_id}
    assert {s.service for s in trace} == {EXPERIENCE, RUNTIME}
    http = next(s for s in trace if s.kind == "server" and s.service == EXPERIENCE)
    assert http.parent_id == ""
    assert http.attributes["http.route"] == "/api/auth/login"
    for intent in ("AuthenticateUser", "CreateSession"):
        assert_intent_pair(trace, intent, http)
    assert_no_secret(receiver.spans, password)


def agent_trace(
    spans: list[ReceivedSpan], correlation_id: str, replies: int
) -> list[ReceivedSpan] | None:
    """The echo's trace once the run and ``replies`` deliveries to the socket arrived."""
    runs = [
        s
        for s in spans
        if s.name == "process RunAgent"
        and s.attributes.get("symphainy.correlation_id") == correlation_id
    ]
    if not runs:
        return None
    trace = trace_of(spans, runs[0].trace_id)
    delivered = [s for s in trace if s.name == "deliver agent reply"]
    if len(delivered) < replies or _one(trace, EXPERIENCE, "receive agent frame") is None:
        return None
    return trace


async def check_echo(receiver: OtlpReceiver, ws_url: str, token: str) -> None:
    """Send an echo with two events on a socket and check its trace."""
    async with connect(ws_url, subprotocols=["symphainy.v1", f"bearer.{token}"]) as ws:  # type: ignore[list-item]
        await ws.send(
            json.dumps(
                {"type": "intent", "id": "e1", "intent": "echo", "payload": {"items": [1, 2]}}
            )
        )
        async with asyncio.timeout(10):
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("id") == "e1" and frame["type"] in ("result", "error"):
                    break
    assert frame["type"] == "result", frame
    correlation_id = frame["correlation_id"]
    # Two events and the result.
    trace = await receiver.wait_for(lambda s: agent_trace(s, correlation_id, 3), SPANS_TIMEOUT_S)

    frame_span = _one(trace, EXPERIENCE, "receive agent frame")
    run = _one(trace, RUNTIME, "process RunAgent")
    assert frame_span is not None
    assert run is not None
    assert frame_span.parent_id == "", "each frame starts its own trace"
    assert frame_span.links, "linked to the socket's span"
    assert run.parent_id == frame_span.span_id
    assert run.kind == "consumer"
    assert run.attributes["symphainy.outcome"] == "ok"
    delivered = [s for s in trace if s.name == "deliver agent reply"]
    assert len(delivered) == 3
    for span in delivered:
        assert span.service == EXPERIENCE
        assert span.parent_id == run.span_id
        assert span.attributes["symphainy.correlation_id"] == correlation_id
    assert {s.service for s in trace} == {EXPERIENCE, RUNTIME}


async def test_symphainy_up_traces_a_login_and_an_echo_as_two_services(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    up = await start_component(
        "up",
        ["up", "--port", "0", "--nats-port", "-1", "--data-dir", str(data_dir)],
        tmp_path,
        traced(receiver),
        re.compile(r"symphainy is up \(NATS \S+\): http://"),
    )
    try:
        found = re.search(r"(http://\S+)", up.announced)
        assert found is not None
        url = found.group(1)
        password = (data_dir / "admin-password").read_text().strip()
        await check_login(receiver, url, "admin", password)
        async with httpx.AsyncClient(base_url=url) as http:
            login = await http.post(
                "/api/auth/login", json={"username": "admin", "password": password}
            )
        ws_url = url.replace("http://", "ws://") + "/api/runtime/agent"
        await check_echo(receiver, ws_url, login.json()["session_token"])
        assert await up.terminate() == 0
    finally:
        await up.kill()
    probes = [s for s in receiver.spans if "healthz" in s.name or "readyz" in s.name]
    assert not probes


async def test_separate_processes_trace_a_login_and_an_echo(
    receiver: OtlpReceiver, bus_secrets: SecureBus, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with processes(
        bus_secrets, nats_server.url, tmp_path / "logs", traced(receiver)
    ) as system:
        await system.runtime()
        web = await system.experience()
        await system.add_users("alice")
        await check_login(receiver, web.url, "alice", PASSWORD)
        token = (await web.login("alice"))["session_token"]
        await check_echo(receiver, web.ws_url, token)


async def test_without_otel_variables_nothing_is_traced(
    bus_secrets: SecureBus,
    nats_server: NatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    # Where the SDK would send spans by default, were it on.
    default = await OtlpReceiver(port=DEFAULT_OTLP_PORT).start()
    bus_headers: list[dict[str, str]] = []
    seen = asyncio.Event()

    async def on_intent(msg: Msg) -> None:
        bus_headers.append(dict(msg.headers or {}))
        if msg.subject.startswith("agent.replies."):
            seen.set()  # the echo's result: everything before it was seen too

    try:
        async with processes(bus_secrets, nats_server.url, tmp_path / "logs") as system:
            spy = await nats_connect(system.harness, "tests-spy")
            try:
                await spy.subscribe("intents.>", cb=on_intent)
                await spy.subscribe("agent.>", cb=on_intent)
                await spy.flush()
                runtime = await system.runtime()
                web = await system.experience()
                await system.add_users("alice")
                token = (await web.login("alice"))["session_token"]
                async with web.socket(token) as ws:
                    assert (await echo(ws, "1"))["type"] == "result"
                await asyncio.wait_for(seen.wait(), 10)
                await spy.flush()
            finally:
                await spy.close()
            # A stopped process has flushed whatever it had to export.
            assert await web.component.terminate() == 0
            assert await runtime.terminate() == 0
    finally:
        await default.stop()
    assert len(bus_headers) >= 3
    for headers in bus_headers:
        assert "X-Correlation-Id" in headers
        assert not {h.lower() for h in headers} & {"traceparent", "tracestate", "baggage"}
    assert default.requests == 0
