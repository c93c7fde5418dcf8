"""Admitted sockets: revocation, expiry, in-band refresh, the agent channel, backpressure."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import httpx

from experience.app import create_app
from experience.gate.protocol import CloseCode
from experience.server import build_server
from intents import RevokeSession
from intents.request import ask
from tests.stack import Stack, StackFactory, close_code, frames_until_final, next_frame


async def test_http_revocation_closes_the_open_socket_with_4404(stack: Stack) -> None:
    login = await stack.login("alice")
    token = login["session_token"]
    async with stack.open(token) as ws, httpx.AsyncClient(base_url=stack.base_url) as http:
        await ws.send('{"type": "intent", "id": "1", "intent": "echo", "payload": {}}')
        await frames_until_final(ws, "1")
        began = time.perf_counter()
        response = await http.delete(
            f"/api/session/{login['session_id']}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 204
        assert await close_code(ws) == CloseCode.SESSION_GONE
        assert time.perf_counter() - began < 1.0


async def test_revocation_reaches_only_that_sessions_sockets(stack: Stack) -> None:
    a = await stack.login("alice")
    b = await stack.login("alice")
    async with stack.open(a["session_token"]) as ws_a, stack.open(b["session_token"]) as ws_b:
        async with httpx.AsyncClient(base_url=stack.base_url) as http:
            await http.delete(
                f"/api/session/{a['session_id']}",
                headers={"Authorization": f"Bearer {a['session_token']}"},
            )
        assert await close_code(ws_a) == CloseCode.SESSION_GONE
        await ws_b.send('{"type": "intent", "id": "b", "intent": "echo", "payload": {}}')
        assert (await frames_until_final(ws_b, "b"))[-1]["type"] == "result"


async def test_socket_closes_4408_when_its_token_expires(make_stack: StackFactory) -> None:
    stack = await make_stack(token_ttl_s=1)
    await stack.add_user("alice")
    token = (await stack.login("alice"))["session_token"]
    async with stack.open(token) as ws:
        assert await close_code(ws, timeout=5) == CloseCode.EXPIRED


async def test_in_band_refresh_keeps_the_socket_open(make_stack: StackFactory) -> None:
    stack = await make_stack(token_ttl_s=3)
    await stack.add_user("alice")
    login = await stack.login("alice")
    first_exp = datetime.fromisoformat(login["expires_at"])
    async with (
        stack.open(login["session_token"]) as ws,
        httpx.AsyncClient(base_url=stack.base_url) as http,
    ):
        # Token times have one-second resolution: refresh in a later second than the login.
        await asyncio.sleep(1.1)
        response = await http.post(
            "/api/session/refresh",
            headers={"Authorization": f"Bearer {login['session_token']}"},
        )
        assert response.status_code == 200
        await ws.send(
            json.dumps({"type": "refresh", "session_token": response.json()["session_token"]})
        )
        assert (await next_frame(ws))["type"] == "refreshed"
        # Past the first token's expiry the socket still works.
        await asyncio.sleep((first_exp - datetime.now(UTC)).total_seconds() + 0.3)
        await ws.send('{"type": "intent", "id": "late", "intent": "echo", "payload": {}}')
        assert (await frames_until_final(ws, "late"))[-1]["type"] == "result"


async def test_refresh_with_another_sessions_token_is_refused(stack: Stack) -> None:
    a = await stack.login("alice")
    other = await stack.login("bob")
    async with stack.open(a["session_token"]) as ws:
        await ws.send(json.dumps({"type": "refresh", "session_token": other["session_token"]}))
        frame = await next_frame(ws)
        assert frame["type"] == "error"
        assert frame["code"] == "token_mismatch"


async def test_agent_round_trip_events_then_result(stack: Stack) -> None:
    token = (await stack.login("alice"))["session_token"]
    async with stack.open(token) as ws:
        await ws.send(
            json.dumps(
                {"type": "intent", "id": "e1", "intent": "echo", "payload": {"items": [1, 2, 3]}}
            )
        )
        frames = await frames_until_final(ws, "e1")
        kinds = [f["type"] for f in frames]
        assert kinds[0] == "ack"
        assert kinds[-1] == "result"
        assert kinds.count("event") == 3
        assert len({f["intent_id"] for f in frames}) == 1
        assert frames[-1]["correlation_id"] == frames[0]["correlation_id"]


async def test_session_agent_reports_this_session(stack: Stack) -> None:
    login = await stack.login("alice")
    async with stack.open(login["session_token"]) as ws:
        await ws.send('{"type": "intent", "id": "s", "intent": "session", "payload": {}}')
        result = (await frames_until_final(ws, "s"))[-1]
        assert result["type"] == "result"
        assert result["data"]["session_id"] == login["session_id"]
        assert result["data"]["state"] == "active"


async def test_results_reach_only_the_socket_that_asked(stack: Stack) -> None:
    alice = (await stack.login("alice"))["session_token"]
    bob = (await stack.login("bob"))["session_token"]
    async with stack.open(alice) as ws_a, stack.open(bob) as ws_b:
        for i in range(5):
            await ws_a.send(json.dumps({"type": "intent", "id": f"a{i}", "intent": "session"}))
            await ws_b.send(json.dumps({"type": "intent", "id": f"b{i}", "intent": "session"}))
        results_a = [(await frames_until_final(ws_a, f"a{i}"))[-1] for i in range(5)]
        results_b = [(await frames_until_final(ws_b, f"b{i}"))[-1] for i in range(5)]
        assert {r["data"]["username"] for r in results_a} == {"alice"}
        assert {r["data"]["username"] for r in results_b} == {"bob"}


async def test_invalid_frames_get_errors_and_the_socket_stays_open(stack: Stack) -> None:
    token = (await stack.login("alice"))["session_token"]
    async with stack.open(token) as ws:
        for bad in [
            "not json",
            "[]",
            '{"type": "nope"}',
            '{"type": "intent", "id": "x"}',
            '{"type": "intent", "id": "y", "intent": "BAD NAME!"}',
        ]:
            await ws.send(bad)
            frame = await next_frame(ws)
            assert frame["type"] == "error"
            assert frame["code"] == "invalid_frame"
        await ws.send(b"binary")
        assert (await next_frame(ws))["code"] == "invalid_frame"
        await ws.send('{"type": "intent", "id": "u", "intent": "no-such-agent"}')
        final = (await frames_until_final(ws, "u"))[-1]
        assert final["type"] == "error"
        await ws.send('{"type": "intent", "id": "ok", "intent": "echo"}')
        assert (await frames_until_final(ws, "ok"))[-1]["type"] == "result"


async def test_work_submitted_while_the_runtime_is_down_completes_after_restart(
    stack: Stack,
) -> None:
    token = (await stack.login("alice"))["session_token"]
    async with stack.open(token) as ws:
        await stack.stop_workers()
        await ws.send('{"type": "intent", "id": "w", "intent": "echo", "payload": {"n": 7}}')
        ack = await next_frame(ws)
        assert ack["type"] == "ack"
        await stack.start_worker()
        result = (await frames_until_final(ws, "w"))[-1]
        assert result["type"] == "result"
        assert result["data"]["n"] == 7


async def test_revocation_through_another_gate_or_the_cli_path_closes_the_socket(
    stack: Stack,
) -> None:
    other = build_server(create_app(stack.settings), stack.settings, "127.0.0.1", 0)
    serving = asyncio.create_task(other.serve())
    while not other.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    try:
        first, second = await stack.login("alice"), await stack.login("alice")
        async with (
            stack.open(first["session_token"]) as ws_1,
            stack.open(second["session_token"]) as ws_2,
        ):
            # Revoked through the other Experience process: this gate only sees the KV write.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{other.bound_port}") as http:
                response = await http.delete(
                    f"/api/session/{first['session_id']}",
                    headers={"Authorization": f"Bearer {first['session_token']}"},
                )
            assert response.status_code == 204
            assert await close_code(ws_1) == CloseCode.SESSION_GONE
            # Revoked by an operator, as `symphainy sessions revoke` does: a bare intent.
            await ask(stack.nc, RevokeSession(session_id=second["session_id"], actor="cli"), 5)
            assert await close_code(ws_2) == CloseCode.SESSION_GONE
    finally:
        other.should_exit = True
        await serving


async def test_a_gate_started_before_any_runtime_sees_the_first_revocations(
    make_stack: StackFactory,
) -> None:
    # No bucket to watch when the gate starts; the first runtime creates it. Everything below
    # happens within milliseconds of that: only admission starting the watch itself (a gate that
    # polled for the bucket, as this one once did every second, missed it) lets the socket see
    # its revocation.
    stack = await make_stack(workers=0)
    await stack.start_worker()
    await stack.add_user("alice")
    login = await stack.login("alice")
    token = login["session_token"]
    async with stack.open(token) as ws, httpx.AsyncClient(base_url=stack.base_url) as http:
        await ws.send('{"type": "intent", "id": "1", "intent": "echo", "payload": {}}')
        assert (await frames_until_final(ws, "1"))[-1]["type"] == "result"
        response = await http.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 204
        assert await close_code(ws) == CloseCode.SESSION_GONE
