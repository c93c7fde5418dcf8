"""Admission over real sockets: every close code of the contract, as a browser would see it."""

from __future__ import annotations

import asyncio

import httpx

from experience.gate.protocol import CloseCode
from tests.stack import Stack, StackFactory, close_code, frames_until_final


async def test_subprotocol_token_is_admitted_with_our_subprotocol(stack: Stack) -> None:
    token = (await stack.login("alice"))["session_token"]
    async with stack.open(token) as ws:
        assert ws.subprotocol == "symphainy.v1"
        await ws.send('{"type": "intent", "id": "1", "intent": "echo", "payload": {"x": 1}}')
        frames = await frames_until_final(ws, "1")
        assert frames[-1]["type"] == "result"


async def test_query_string_token_is_admitted(stack: Stack) -> None:
    token = (await stack.login("alice"))["session_token"]
    async with stack.open(token, query=True) as ws:
        assert ws.subprotocol is None
        await ws.send('{"type": "intent", "id": "q", "intent": "echo", "payload": {}}')
        assert (await frames_until_final(ws, "q"))[-1]["type"] == "result"


async def test_missing_token_is_4401(stack: Stack) -> None:
    async with stack.open(None, subprotocols=["symphainy.v1"]) as ws:
        assert ws.subprotocol == "symphainy.v1"
        assert await close_code(ws) == CloseCode.TOKEN_INVALID
    async with stack.open(None) as ws:
        assert await close_code(ws) == CloseCode.TOKEN_INVALID


async def test_garbage_and_forged_tokens_are_4401(stack: Stack) -> None:
    real = (await stack.login("alice"))["session_token"]
    head, body, _ = real.split(".")
    for token in ["garbage", "a.b.c", f"{head}.{body}.forgedsignature"]:
        async with stack.open(token) as ws:
            assert await close_code(ws) == CloseCode.TOKEN_INVALID


async def test_malformed_handshake_is_4400(stack: Stack) -> None:
    protocols = ["symphainy.v1", "bearer.a", "bearer.b"]
    async with stack.open(None, subprotocols=protocols) as ws:
        assert await close_code(ws) == CloseCode.MALFORMED


async def test_foreign_origin_is_4403(stack: Stack) -> None:
    token = (await stack.login("alice"))["session_token"]
    async with stack.open(token, origin="http://evil.example") as ws:
        assert await close_code(ws) == CloseCode.ORIGIN_FORBIDDEN
    async with stack.open(token, origin=stack.base_url) as ws:
        await ws.send('{"type": "intent", "id": "o", "intent": "echo", "payload": {}}')
        assert (await frames_until_final(ws, "o"))[-1]["type"] == "result"


async def test_revoked_session_is_4404_at_admission(stack: Stack) -> None:
    token = (await stack.login("alice"))["session_token"]
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        response = await http.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 204
    async with stack.open(token) as ws:
        assert await close_code(ws) == CloseCode.SESSION_GONE


async def test_expired_token_is_4408_at_admission(make_stack: StackFactory) -> None:
    stack = await make_stack(token_ttl_s=1)
    await stack.add_user("alice")
    login = await stack.login("alice")
    # Wait out the token's lifetime: the behaviour under test is time itself.
    await asyncio.sleep(1.2)
    async with stack.open(login["session_token"]) as ws:
        assert await close_code(ws) == CloseCode.EXPIRED


async def test_no_runtime_is_4503_and_recovers(stack: Stack) -> None:
    token = (await stack.login("alice"))["session_token"]
    await stack.stop_workers()
    async with stack.open(token) as ws:
        assert await close_code(ws) == CloseCode.RUNTIME_UNAVAILABLE
    await stack.start_worker()
    async with stack.open(token) as ws:
        await ws.send('{"type": "intent", "id": "r", "intent": "echo", "payload": {}}')
        assert (await frames_until_final(ws, "r"))[-1]["type"] == "result"


async def test_too_many_sockets_for_a_session_is_4429(make_stack: StackFactory) -> None:
    stack = await make_stack(ws_max_per_session=2)
    await stack.add_user("alice")
    token = (await stack.login("alice"))["session_token"]
    async with stack.open(token) as first, stack.open(token) as second:
        async with stack.open(token) as third:
            assert await close_code(third) == CloseCode.TOO_MANY
        for ws, n in ((first, "1"), (second, "2")):
            await ws.send(f'{{"type": "intent", "id": "{n}", "intent": "echo", "payload": {{}}}}')
            assert (await frames_until_final(ws, n))[-1]["type"] == "result"


async def test_shutdown_closes_sockets_with_1001(stack: Stack) -> None:
    token = (await stack.login("alice"))["session_token"]
    async with stack.open(token) as ws:
        stopping = asyncio.create_task(stack.stop_server())
        assert await close_code(ws) == CloseCode.GOING_AWAY
        await stopping


async def test_many_bad_tokens_are_all_rejected_and_nothing_is_held(stack: Stack) -> None:
    async def attempt(i: int) -> int:
        async with stack.open(f"bad-token-{i}") as ws:
            return await close_code(ws, timeout=15)

    codes = await asyncio.gather(*(attempt(i) for i in range(200)))
    assert set(codes) == {CloseCode.TOKEN_INVALID}
    assert stack.server is not None
    gate = stack.server._app.state.gate
    assert len(gate.registry) == 0
    assert gate._pending_admissions == 0
