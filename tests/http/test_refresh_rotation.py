"""Refresh rotates, reuse revokes, the grace is minutes, and a user's sessions are capped.

Real uvicorn, runtime and nats-server; sockets through the real ``websockets`` client.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
from pydantic import SecretStr

from bus.settings import Settings
from experience.gate.protocol import CloseCode
from experience.tokens import Keyring, Tokens
from intents import GetSession, GetSessionReply, SessionState
from intents.request import ask
from tests.stack import Stack, StackFactory, close_code, frames_until_final, next_frame


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refresh(stack: Stack, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        return await http.post("/api/session/refresh", headers=bearer(token))


async def sessions_with(stack: Stack, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        return await http.get("/api/sessions", headers=bearer(token))


async def state_of(stack: Stack, session_id: str) -> SessionState:
    got = await ask(stack.nc, GetSession(session_id=session_id), 5.0)
    assert isinstance(got, GetSessionReply)
    return got.session.state


async def echo_works(ws: Any, client_id: str) -> bool:
    await ws.send(json.dumps({"type": "intent", "id": client_id, "intent": "echo", "payload": {}}))
    return bool((await frames_until_final(ws, client_id))[-1]["type"] == "result")


async def test_after_refresh_the_old_token_is_refused_and_the_new_one_works(
    stack: Stack,
) -> None:
    login = await stack.login("alice")
    old = login["session_token"]
    refreshed = await refresh(stack, old)
    assert refreshed.status_code == 200
    new = refreshed.json()["session_token"]

    stale = await sessions_with(stack, old)
    assert stale.status_code == 401
    assert stale.json()["error"]["code"] == "token_invalid"
    assert (await sessions_with(stack, new)).status_code == 200
    # The socket gate refuses it too (4401, log in), and admits the new one.
    async with stack.open(old) as ws:
        assert await close_code(ws) == CloseCode.TOKEN_INVALID
    async with stack.open(new) as ws:
        assert await echo_works(ws, "1")
    assert await state_of(stack, login["session_id"]) is SessionState.ACTIVE


async def test_a_socket_keeps_its_token_until_a_current_one_comes_in_band(stack: Stack) -> None:
    login = await stack.login("alice")
    first = login["session_token"]
    async with stack.open(first) as ws:
        second = (await refresh(stack, first)).json()["session_token"]
        third = (await refresh(stack, second)).json()["session_token"]
        # Admitted with the first token: it runs on until that token expires (or the session
        # ends); a replaced token offered in-band is refused and changes nothing.
        assert await echo_works(ws, "still")
        await ws.send(json.dumps({"type": "refresh", "session_token": second}))
        refused = await next_frame(ws)
        assert (refused["type"], refused["code"]) == ("error", "token_invalid")
        await ws.send(json.dumps({"type": "refresh", "session_token": third}))
        assert (await next_frame(ws))["type"] == "refreshed"
        assert await echo_works(ws, "after")


async def test_a_replaced_token_presented_to_refresh_revokes_the_session(stack: Stack) -> None:
    login = await stack.login("alice")
    stolen = login["session_token"]
    current = (await refresh(stack, stolen)).json()["session_token"]
    async with stack.open(current) as ws:
        reused = await refresh(stack, stolen)
        assert reused.status_code == 401
        assert reused.json()["error"]["code"] == "session_revoked"
        # Everyone holding the session is out: its live socket, its newest token, any refresh.
        assert await close_code(ws) == CloseCode.SESSION_GONE
    assert (await sessions_with(stack, current)).status_code == 401
    again = await refresh(stack, current)
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "session_revoked"
    assert await state_of(stack, login["session_id"]) is SessionState.REVOKED


def _signer(settings: Settings, issued_at: datetime) -> Tokens:
    """The stack's own signer, as if its clock read ``issued_at``."""
    assert settings.jwt_active_kid is not None
    keys = {kid: key.get_secret_value() for kid, key in settings.jwt_keys.items()}
    return Tokens(
        Keyring(settings.jwt_algorithm, keys, settings.jwt_active_kid),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_s=settings.token_ttl_s,
        refresh_grace_s=settings.refresh_grace_s,
        clock=lambda: issued_at,
    )


def expired_copy(settings: Settings, token: str, seconds_ago: int) -> str:
    """The same session and jti as ``token``, signed so that it expired ``seconds_ago``."""
    claims = jwt.decode(token, options={"verify_signature": False})
    issued_at = datetime.now(UTC) - timedelta(seconds=settings.token_ttl_s + seconds_ago)
    far = datetime.now(UTC) + timedelta(days=1)
    return (
        _signer(settings, issued_at)
        .issue(claims["sub"], claims["sid"], far, jti=claims["jti"])
        .token
    )


async def test_the_refresh_grace_is_minutes_not_a_day(make_stack: StackFactory) -> None:
    assert Settings.model_fields["refresh_grace_s"].default == 300
    key = {"t1": SecretStr(secrets.token_urlsafe(48))}
    stack = await make_stack(refresh_grace_s=60, jwt_keys=key, jwt_active_kid="t1")
    await stack.add_user("alice")
    login = await stack.login("alice")

    recent = expired_copy(stack.settings, login["session_token"], seconds_ago=30)
    assert (await sessions_with(stack, recent)).status_code == 401  # expired for Bearer use
    refreshed = await refresh(stack, recent)
    assert refreshed.status_code == 200
    current = refreshed.json()["session_token"]

    # The current token id, expired longer ago than the grace: refused, and not as reuse.
    old = expired_copy(stack.settings, current, seconds_ago=120)
    late = await refresh(stack, old)
    assert late.status_code == 401
    assert late.json()["error"]["code"] == "token_expired"
    assert (await sessions_with(stack, current)).status_code == 200
    assert await state_of(stack, login["session_id"]) is SessionState.ACTIVE


async def test_the_51st_session_evicts_the_oldest_and_closes_its_socket(stack: Stack) -> None:
    oldest = await stack.login("alice")
    second = await stack.login("alice")
    async with (
        stack.open(oldest["session_token"]) as ws,
        httpx.AsyncClient(base_url=stack.base_url, headers=bearer(second["session_token"])) as http,
    ):
        for _ in range(48):
            assert (await http.post("/api/session/create")).status_code == 201
        assert len((await http.get("/api/sessions")).json()) == 50
        assert await echo_works(ws, "at-the-cap")

        assert (await http.post("/api/session/create")).status_code == 201
        assert await close_code(ws) == CloseCode.SESSION_GONE
        live = [s["session_id"] for s in (await http.get("/api/sessions")).json()]
        assert len(live) == 50
        assert oldest["session_id"] not in live
        assert second["session_id"] in live
        assert (await http.get(f"/api/session/{second['session_id']}")).status_code == 200
    assert (await sessions_with(stack, oldest["session_token"])).status_code == 401
    assert await state_of(stack, oldest["session_id"]) is SessionState.REVOKED


async def test_a_revoked_session_is_404_to_get(stack: Stack) -> None:
    mine, other = await stack.login("alice"), await stack.login("alice")
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers=bearer(mine["session_token"])
    ) as http:
        assert (await http.get(f"/api/session/{other['session_id']}")).status_code == 200
        assert (await http.delete(f"/api/session/{other['session_id']}")).status_code == 204
        gone = await http.get(f"/api/session/{other['session_id']}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "session_not_found"
