"""OpenID Connect login against a real provider (npm oidc-provider): the flow and each failure."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from nats.aio.client import Client

from bus.settings import Settings
from experience.oidc_state import COOKIE
from intents import ListUsers, ListUsersReply
from intents.request import request
from runtime_worker.passwords import Passwords
from symphainy.admin import users_list
from tests.oidc import (
    PUBLIC_CLIENT_ID,
    OidcSystem,
    cancel_at_provider,
    follow,
    fragment,
    listening_socket,
    oidc_system,
    query,
    start_login,
)
from tests.stack import PASSWORD, Stack

HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
async def system(
    settings: Settings, nc: Client, cheap_passwords: Passwords
) -> AsyncIterator[OidcSystem]:
    async with oidc_system(settings, nc, cheap_passwords) as built:
        yield built


async def _to_callback(http: httpx.AsyncClient, system: OidcSystem) -> str:
    return await follow(http, await start_login(http, system.base_url), stop_at=system.callback)


async def _handover(http: httpx.AsyncClient, system: OidcSystem) -> str:
    back = await http.get(await _to_callback(http, system))
    assert back.status_code == 303, back.text
    location = back.headers["location"]
    assert location.startswith(system.base_url + "/#"), location
    return fragment(location)["handover"]


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


async def test_config_names_the_provider(system: OidcSystem) -> None:
    async with httpx.AsyncClient(base_url=system.base_url) as http:
        config = (await http.get("/api/auth/oidc/config")).json()
    assert config == {
        "enabled": True,
        "provider": "default",
        "name": "Test Provider",
        "login_url": "/api/auth/oidc/login",
    }


async def test_login_redirects_with_pkce_state_and_nonce(system: OidcSystem) -> None:
    async with httpx.AsyncClient() as http:
        url = await start_login(http, system.base_url)
        cookie = http.cookies.get(COOKIE)
    params = query(url)
    assert url.startswith(system.provider.url + "/auth?")
    assert params["client_id"] == "symphainy"
    assert params["redirect_uri"] == system.callback
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 43
    assert len(params["nonce"]) >= 43
    assert params["scope"] == "openid profile email"
    # The verifier stays in a cookie only: never in the URL.
    assert cookie is not None
    assert params["code_challenge"] not in cookie


async def test_a_login_ends_with_a_session_token_handed_over_once(system: OidcSystem) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        code = await _handover(http, system)
        assert http.cookies.get(COOKIE) is None  # the login state is spent
        exchanged = await http.post(
            system.base_url + "/api/auth/oidc/exchange", json={"code": code}
        )
        assert exchanged.status_code == 200, exchanged.text
        login = exchanged.json()
        assert login["user"]["username"] == "alice"
        token = login["session_token"]
        sessions = await http.get(
            system.base_url + "/api/sessions", headers={"Authorization": f"Bearer {token}"}
        )
        assert sessions.status_code == 200
        assert [s["session_id"] for s in sessions.json()] == [login["session_id"]]
        again = await http.post(system.base_url + "/api/auth/oidc/exchange", json={"code": code})
        _error(again, 401, "handover_invalid")
        # A second login of the same identity is the same user.
        second = await http.post(
            system.base_url + "/api/auth/oidc/exchange",
            json={"code": await _handover(http, system)},
        )
        assert second.json()["user"] == login["user"]


async def test_external_users_are_listed_with_their_issuer_and_have_no_password(
    system: OidcSystem, nc: Client
) -> None:
    await system.stack.add_user("bob")
    async with httpx.AsyncClient(timeout=10) as http:
        code = await _handover(http, system)
        await http.post(system.base_url + "/api/auth/oidc/exchange", json={"code": code})
        users = await request(nc, ListUsers(), ListUsersReply, 5)
        issuers = {u.username: u.issuer for u in users.users}
        assert issuers == {"alice": system.provider.issuer, "bob": None}
        listed = await users_list(nc, system.stack.settings, argparse.Namespace())
        assert listed[0].split()[-1] == "ISSUER"
        assert {line.split()[0]: line.split()[-1] for line in listed[1:]} == {
            "alice": system.provider.issuer,
            "bob": "-",
        }
        password = await http.post(
            system.base_url + "/api/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        _error(password, 401, "invalid_credentials")


async def test_a_local_user_of_the_same_name_is_not_taken_over(system: OidcSystem) -> None:
    await system.stack.add_user("alice")
    local = await system.stack.login("alice")
    async with httpx.AsyncClient(timeout=10) as http:
        code = await _handover(http, system)
        login = (
            await http.post(system.base_url + "/api/auth/oidc/exchange", json={"code": code})
        ).json()
    assert login["user"]["id"] != local["user"]["id"]
    assert login["user"]["username"].startswith("alice-")


async def test_a_public_client_logs_in_with_pkce_alone(
    settings: Settings, nc: Client, cheap_passwords: Passwords
) -> None:
    async with (
        oidc_system(settings, nc, cheap_passwords, client_id=PUBLIC_CLIENT_ID) as system,
        httpx.AsyncClient(timeout=10) as http,
    ):
        code = await _handover(http, system)
        exchanged = await http.post(
            system.base_url + "/api/auth/oidc/exchange", json={"code": code}
        )
    assert exchanged.status_code == 200, exchanged.text


async def test_cancel_at_the_provider_returns_to_the_login_page(system: OidcSystem) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        back = await cancel_at_provider(
            http, await start_login(http, system.base_url), stop_at=system.callback
        )
        assert query(back)["error"] == "access_denied"
        _error(await http.get(back), 400, "login_cancelled")
        page = await http.get(back, headers=HTML)
    assert page.status_code == 303
    assert page.headers["location"] == system.base_url + "/#login_error=login_cancelled"


async def test_a_state_that_does_not_match_the_cookie_is_refused(system: OidcSystem) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        back = await _to_callback(http, system)
        forged = back.replace(f"state={query(back)['state']}", "state=someone-elses-state")
        _error(await http.get(forged), 400, "login_state_invalid")


async def test_a_callback_without_the_login_cookie_is_refused(system: OidcSystem) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        back = await _to_callback(http, system)
    async with httpx.AsyncClient(timeout=10) as stranger:
        _error(await stranger.get(back), 400, "login_state_invalid")


async def test_a_replayed_callback_is_refused(system: OidcSystem) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        back = await _to_callback(http, system)
        cookie = http.cookies.get(COOKIE)
        assert cookie is not None
        first = await http.get(back)
        assert first.status_code == 303
        # The browser's cookie is gone: the same URL again has no login state.
        _error(await http.get(back), 400, "login_state_invalid")
        # Someone who kept the cookie too: the provider refuses a code used once.
    async with httpx.AsyncClient(timeout=10, cookies={COOKIE: cookie}) as kept:
        _error(await kept.get(back), 400, "authorization_code_invalid")


async def test_a_made_up_code_is_refused(system: OidcSystem) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        back = await _to_callback(http, system)
        made_up = back.replace(f"code={query(back)['code']}", "code=made-up-code")
        _error(await http.get(made_up), 400, "authorization_code_invalid")


@pytest.mark.parametrize("code", ["x" * 43, "short"])
async def test_a_made_up_handover_code_is_refused(system: OidcSystem, code: str) -> None:
    async with httpx.AsyncClient(base_url=system.base_url) as http:
        response = await http.post("/api/auth/oidc/exchange", json={"code": code})
    assert response.status_code in (401, 422)
    assert response.json()["error"]["code"] in ("handover_invalid", "invalid_request")


async def test_provider_down_is_502_quickly_and_password_logins_still_work(
    make_stack: object, settings: Settings, nc: Client, cheap_passwords: Passwords
) -> None:
    closed = listening_socket()
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    stack = Stack(
        settings=settings.model_copy(
            update={
                "oidc_issuer": f"http://127.0.0.1:{port}",
                "oidc_client_id": "symphainy",
                "oidc_timeout_s": 2.0,
            }
        ),
        nc=nc,
        passwords=cheap_passwords,
    )
    try:
        await stack.start_worker()
        await stack.start_server()
        await stack.add_user("bob")
        assert (await stack.login("bob"))["user"]["username"] == "bob"
        async with httpx.AsyncClient(base_url=stack.base_url) as http:
            started = time.monotonic()
            response = await http.get("/api/auth/oidc/login")
            took = time.monotonic() - started
            _error(response, 502, "provider_unavailable")
            assert took < 2.0
            page = await http.get("/api/auth/oidc/login", headers=HTML)
            assert page.status_code == 303
            assert page.headers["location"].endswith("/#login_error=provider_unavailable")
            logout = await http.get("/api/auth/oidc/logout")
            assert logout.status_code == 303
            assert logout.headers["location"].endswith("/")
    finally:
        await stack.stop_server()
        await stack.stop_workers()


async def test_a_provider_that_never_answers_is_502_within_the_deadline(
    settings: Settings, nc: Client, cheap_passwords: Passwords
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    stack = Stack(
        settings=settings.model_copy(
            update={
                "oidc_issuer": f"http://127.0.0.1:{port}",
                "oidc_client_id": "symphainy",
                "oidc_timeout_s": 0.5,
            }
        ),
        nc=nc,
        passwords=cheap_passwords,
    )
    try:
        await stack.start_worker()
        await stack.start_server()
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as http:
            started = time.monotonic()
            response = await http.get("/api/auth/oidc/login")
            took = time.monotonic() - started
        _error(response, 502, "provider_unavailable")
        assert 0.4 < took < 1.5
    finally:
        await stack.stop_server()
        await stack.stop_workers()
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_without_a_provider_the_routes_say_so(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        assert (await http.get("/api/auth/oidc/config")).json() == {
            "enabled": False,
            "provider": None,
            "name": None,
            "login_url": None,
        }
        _error(await http.get("/api/auth/oidc/login"), 404, "not_found")
        _error(await http.get("/api/auth/oidc/callback?code=x&state=y"), 404, "not_found")


async def test_logout_at_the_provider_when_it_offers_it(system: OidcSystem) -> None:
    async with httpx.AsyncClient(base_url=system.base_url) as http:
        response = await http.get("/api/auth/oidc/logout")
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(system.provider.url + "/session/end?")
    assert query(location) == {
        "client_id": "symphainy",
        "post_logout_redirect_uri": system.base_url + "/",
    }
