"""The ID token's checks, one test each, with tokens a real provider signed: for another client,
by another issuer with the same key, with another key under the same issuer and key id, for
another login's nonce, and expired. Each is put into a real login at the token endpoint, in
place of the token the provider issued there, and the callback must refuse it."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from nats.aio.client import Client

from bus.settings import Settings
from runtime_worker.passwords import Passwords
from tests.oidc import (
    CLIENT_ID,
    OTHER_CLIENT_ID,
    OTHER_REDIRECT,
    OidcSystem,
    direct_id_token,
    follow,
    oidc_system,
    query,
    rsa_jwk,
    start_login,
    start_provider,
)

Variant = Callable[[OidcSystem, str], Awaitable[str]]


@pytest.fixture
async def system(
    settings: Settings, nc: Client, cheap_passwords: Passwords
) -> AsyncIterator[OidcSystem]:
    # No clock skew allowance: the expiry test need not wait out a minute.
    async with oidc_system(settings, nc, cheap_passwords, oidc_clock_skew_s=0) as built:
        yield built


async def _login_with(system: OidcSystem, variant: Variant) -> httpx.Response:
    """Start a login, have the provider answer its token request with ``variant``'s token
    (made for this login's nonce), and finish the login."""
    async with httpx.AsyncClient(timeout=10) as http:
        url = await start_login(http, system.base_url)
        token = await variant(system, query(url)["nonce"])
        await system.provider.post("/test/next-id-token", token)
        return await http.get(await follow(http, url, stop_at=system.callback))


def _refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "id_token_invalid", error
    assert all(word in error["message"] for word in words), error


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def test_the_control_token_passes(system: OidcSystem) -> None:
    async def same(s: OidcSystem, nonce: str) -> str:
        return await direct_id_token(
            s.provider, client_id=CLIENT_ID, redirect_uri=s.callback, nonce=nonce
        )

    response = await _login_with(system, same)
    assert response.status_code == 303, response.text
    assert "#handover=" in response.headers["location"]


async def test_the_audience_is_checked(system: OidcSystem) -> None:
    async def for_another_client(s: OidcSystem, nonce: str) -> str:
        token = await direct_id_token(
            s.provider, client_id=OTHER_CLIENT_ID, redirect_uri=OTHER_REDIRECT, nonce=nonce
        )
        assert _claims(token)["aud"] == OTHER_CLIENT_ID
        return token

    _refused(await _login_with(system, for_another_client), "aud")


async def test_the_nonce_is_checked(system: OidcSystem) -> None:
    async def of_another_login(s: OidcSystem, nonce: str) -> str:
        return await direct_id_token(
            s.provider, client_id=CLIENT_ID, redirect_uri=s.callback, nonce="another-login"
        )

    _refused(await _login_with(system, of_another_login), "nonce")


async def test_the_issuer_is_checked(system: OidcSystem) -> None:
    # Another provider with the very same signing key: the signature verifies, the issuer not.
    other = await start_provider(system.callback, system.jwk)
    try:

        async def from_another_issuer(s: OidcSystem, nonce: str) -> str:
            token = await direct_id_token(
                other, client_id=CLIENT_ID, redirect_uri=s.callback, nonce=nonce
            )
            assert _claims(token)["iss"] == other.issuer != s.provider.issuer
            return token

        _refused(await _login_with(system, from_another_issuer), "iss")
    finally:
        await other.stop()


async def test_the_signature_is_checked(system: OidcSystem) -> None:
    # Another provider posing as ours (same issuer, same key id), with a key of its own.
    impostor = await start_provider(
        system.callback, rsa_jwk(kid=str(system.jwk["kid"])), issuer=system.provider.issuer
    )
    try:

        async def signed_by_another_key(s: OidcSystem, nonce: str) -> str:
            token = await direct_id_token(
                impostor, client_id=CLIENT_ID, redirect_uri=s.callback, nonce=nonce
            )
            assert _claims(token)["iss"] == s.provider.issuer
            return token

        _refused(await _login_with(system, signed_by_another_key), "signature")
    finally:
        await impostor.stop()


async def test_an_unsigned_token_is_refused(system: OidcSystem) -> None:
    async def unsigned(s: OidcSystem, nonce: str) -> str:
        real = await direct_id_token(
            s.provider, client_id=CLIENT_ID, redirect_uri=s.callback, nonce=nonce
        )
        header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        return f"{header}.{real.split('.')[1]}."

    _refused(await _login_with(system, unsigned), "signature")


async def test_the_expiry_is_checked(system: OidcSystem) -> None:
    await system.provider.post("/test/id-token-ttl", "1")

    async def expired(s: OidcSystem, nonce: str) -> str:
        token = await direct_id_token(
            s.provider, client_id=CLIENT_ID, redirect_uri=s.callback, nonce=nonce
        )
        exp = _claims(token)["exp"]
        assert isinstance(exp, int)
        # What is tested is time passing: wait until the token's second is over.
        await asyncio.sleep(max(0.0, exp + 0.1 - time.time()))
        return token

    _refused(await _login_with(system, expired), "exp")
