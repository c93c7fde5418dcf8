"""Hostile edges of the socket: frames that fail to parse, requests addressed to a foreign host
(DNS rebinding), runs that would send without end, and runs that outlive their socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from nats.aio.client import Client
from websockets.asyncio.client import connect

from bus import names
from experience.gate.protocol import CloseCode
from intents.agent import CANCELLED
from runtime_worker.agents import AgentContext, builtin_agents
from runtime_worker.app import start_worker
from tests.nats.test_runtime_agents import audit_outcome
from tests.stack import Stack, StackFactory, close_code, frames_until_final, next_frame

ECHO = '{"type": "intent", "id": "e", "intent": "echo", "payload": {"items": [1]}}'


async def echoes(ws: Any) -> bool:
    await ws.send(ECHO)
    return bool((await frames_until_final(ws, "e"))[-1]["type"] == "result")


async def test_a_frame_nested_10000_deep_gets_an_error_and_the_socket_still_echoes(
    stack: Stack,
) -> None:
    token = (await stack.login("alice"))["session_token"]
    deep = '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}"
    async with stack.open(token) as ws:
        await ws.send(f'{{"type": "intent", "id": "d", "intent": "echo", "payload": {deep}}}')
        frame = await next_frame(ws)
        assert (frame["type"], frame["code"]) == ("error", "invalid_frame")
        assert await echoes(ws)


async def test_frames_that_fail_to_parse_in_any_way_get_errors_and_the_socket_stays(
    stack: Stack,
) -> None:
    token = (await stack.login("alice"))["session_token"]
    intent = '{"type": "intent", "id": "x", "intent": "echo", "payload": %s}'
    bad = [
        "[" * 10_000,
        intent % ('{"n": ' + "9" * 5000 + "}"),  # more digits than Python converts
        intent % '{"n": 1e999}',  # infinity: JSON.parse could not read the echo
        intent % '{"n": NaN}',
        intent % '{"s": "\\udc00"}',  # a lone surrogate
        intent % '"not an object"',
        '{"type": "intent", "id": 7, "intent": "echo"}',
        '{"type": "refresh"}',
        "\x00",
    ]
    async with stack.open(token) as ws:
        for text in bad:
            await ws.send(text)
            frame = await next_frame(ws)
            assert (frame["type"], frame["code"]) == ("error", "invalid_frame"), text[:40]
        await ws.send(b"\x00\x01")  # binary
        assert (await next_frame(ws))["type"] == "error"
        assert await echoes(ws)


async def test_invalid_utf8_in_a_text_frame_is_closed_1007_as_the_protocol_requires(
    stack: Stack,
) -> None:
    # RFC 6455 8.1: an endpoint MUST fail the connection on invalid UTF-8 text; the server
    # does so with the right code instead of dropping the socket.
    token = (await stack.login("alice"))["session_token"]
    async with stack.open(token) as ws:
        await ws.send(b'{"type": "\xff"}', text=True)
        assert await close_code(ws) == 1007


def _foreign(stack: Stack, token: str, host: str, origin: str | None) -> Any:
    """A socket to the stack whose request names ``host`` (and ``origin``), as a rebound
    browser's would: the TCP connection still goes to 127.0.0.1."""
    port = stack.ws_url.split(":")[2].split("/")[0]
    headers = {"Origin": origin} if origin else None
    return connect(
        f"ws://{host}:{port}/api/runtime/agent",
        host="127.0.0.1",
        port=int(port),
        proxy=None,
        subprotocols=["symphainy.v1", f"bearer.{token}"],  # type: ignore[list-item]
        additional_headers=headers,
        open_timeout=5,
        close_timeout=2,
    )


async def test_dns_rebinding_is_4403_and_same_origin_by_bind_address_is_admitted(
    stack: Stack,
) -> None:
    token = (await stack.login("alice"))["session_token"]
    async with _foreign(stack, token, "evil.example", "http://evil.example") as ws:
        assert await close_code(ws) == CloseCode.ORIGIN_FORBIDDEN
    port = stack.base_url.rsplit(":", 1)[1]
    async with _foreign(stack, token, "evil.example", f"http://evil.example:{port}") as ws:
        assert await close_code(ws) == CloseCode.ORIGIN_FORBIDDEN
    async with _foreign(stack, token, "evil.example", None) as ws:
        assert await close_code(ws) == CloseCode.ORIGIN_FORBIDDEN
    async with stack.open(token, origin=stack.base_url) as ws:
        assert await echoes(ws)
    async with _foreign(stack, token, "localhost", f"http://localhost:{port}") as ws:
        assert await echoes(ws)


async def test_a_configured_public_url_is_the_only_host_and_origin(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(public_url="https://app.example")
    await stack.add_user("alice")
    async with httpx.AsyncClient(base_url=stack.base_url, headers={"Host": "app.example"}) as http:
        login = await http.post(
            "/api/auth/login", json={"username": "alice", "password": "a long enough password"}
        )
    token = login.json()["session_token"]
    async with _foreign(stack, token, "app.example", "https://app.example") as ws:
        assert await echoes(ws)
    async with stack.open(token, origin=stack.base_url) as ws:  # 127.0.0.1: not configured
        assert await close_code(ws) == CloseCode.ORIGIN_FORBIDDEN


async def test_http_to_a_foreign_host_is_400(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        refused = await http.get("/healthz", headers={"Host": "evil.example"})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "host_not_allowed"
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/healthz", headers={"Host": "localhost"})).status_code == 200


async def test_an_echo_run_stops_at_the_event_cap_with_an_error(make_stack: StackFactory) -> None:
    stack = await make_stack(agent_max_events_per_run=20)
    await stack.add_user("alice")
    token = (await stack.login("alice"))["session_token"]
    # The finding's frame: 58 KB, 29,000 items, once 29,000 events.
    frame = {"type": "intent", "id": "big", "intent": "echo", "payload": {"items": [1] * 29_000}}
    async with stack.open(token) as ws:
        await ws.send(json.dumps(frame, separators=(",", ":")))
        frames = await frames_until_final(ws, "big")
        assert [f["type"] for f in frames] == ["ack", *["event"] * 20, "error"]
        assert frames[-1]["code"] == "run_limit_exceeded"
        assert await echoes(ws)


async def _stack_with_a_long_agent(
    make_stack: StackFactory,
) -> tuple[Stack, asyncio.Event]:
    """A stack whose worker has ``hold``: one event, then work until cancelled."""
    stopped = asyncio.Event()

    async def hold(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
        await ctx.emit({"holding": True})
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()
        return {}

    stack = await make_stack(workers=0)
    worker = await start_worker(
        stack.settings, passwords=stack.passwords, agents={**builtin_agents(), "hold": hold}
    )
    stack.workers.append(worker)
    await stack.add_user("alice")
    return stack, stopped


async def _hold(ws: Any) -> str:
    """Start ``hold`` on the socket; its intent id once it is running."""
    await ws.send('{"type": "intent", "id": "h", "intent": "hold", "payload": {}}')
    ack = await next_frame(ws)
    assert ack["type"] == "ack"
    assert (await next_frame(ws))["type"] == "event"
    return str(ack["intent_id"])


async def _work_left(nc: Client) -> tuple[int, int]:
    """Deliveries not yet acked, and work not yet delivered, on ``AGENT_WORK``."""
    info = await nc.jetstream().consumer_info(names.AGENT_WORK_STREAM, names.AGENT_CONSUMER)
    return info.num_ack_pending, info.num_pending


async def test_closing_the_socket_mid_run_cancels_the_run_on_the_worker(
    make_stack: StackFactory, nc: Client
) -> None:
    stack, stopped = await _stack_with_a_long_agent(make_stack)
    token = (await stack.login("alice"))["session_token"]
    async with stack.open(token) as ws:
        intent_id = await _hold(ws)
        assert await _work_left(nc) == (1, 0)
    await asyncio.wait_for(stopped.wait(), 5)
    assert await audit_outcome(nc, intent_id) == CANCELLED
    await stack.stop_workers()  # waits for the run's ack, then flushes it
    assert await _work_left(nc) == (0, 0)


async def test_revoking_the_session_mid_run_cancels_the_run(
    make_stack: StackFactory, nc: Client
) -> None:
    stack, stopped = await _stack_with_a_long_agent(make_stack)
    login = await stack.login("alice")
    token = login["session_token"]
    async with stack.open(token) as ws, httpx.AsyncClient(base_url=stack.base_url) as http:
        intent_id = await _hold(ws)
        response = await http.delete(
            f"/api/session/{login['session_id']}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 204
        assert await close_code(ws) == CloseCode.SESSION_GONE
    await asyncio.wait_for(stopped.wait(), 5)
    assert await audit_outcome(nc, intent_id) == CANCELLED


async def test_permessage_deflate_is_declined_by_default_and_taken_when_enabled(
    make_stack: StackFactory,
) -> None:
    # The client offers it (websockets does by default); each negotiated socket keeps a zlib
    # compressor and decompressor for its whole life, so the server declines unless told.
    for enabled in (False, True):
        stack = await make_stack(ws_per_message_deflate=enabled)
        name = f"deflate-{enabled}".lower()
        await stack.add_user(name)
        token = (await stack.login(name))["session_token"]
        async with stack.open(token) as ws:
            accepted = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            assert ("permessage-deflate" in accepted) is enabled
            assert await echoes(ws)
