"""Logging in through a real OpenID provider (npm oidc-provider) in Debian's chromium: its own
login and consent pages, back to the web client logged in, the socket, an echo, and out again.

The browser talks to uvicorn directly: the provider must know the exact redirect URI before
the app starts, and the app its exact public URL (compose.yaml routes ``/api/auth/`` as a whole,
which the other browser tests prove through Traefik).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from playwright.async_api import Browser, BrowserContext, Page, expect

from bus.settings import Settings
from runtime_worker.passwords import Passwords
from tests.browser.conftest import VIEWPORT, ClientPage
from tests.browser.test_client import send_intent
from tests.oidc import OidcSystem, oidc_system

# The provider's pages load a web font; nothing but loopback is reachable (or wanted) here.
NOT_LOOPBACK = re.compile(r"^https?://(?!127\.0\.0\.1[:/])")


@pytest.fixture
async def system(
    settings: Settings, nc: Client, cheap_passwords: Passwords
) -> AsyncIterator[OidcSystem]:
    async with oidc_system(settings, nc, cheap_passwords) as built:
        yield built


@pytest.fixture
async def context(browser: Browser, system: OidcSystem) -> AsyncIterator[BrowserContext]:
    opened = await browser.new_context(base_url=system.base_url, viewport=VIEWPORT)
    await opened.route(NOT_LOOPBACK, lambda route: route.abort())
    try:
        yield opened
    finally:
        await opened.close()


async def _open(context: BrowserContext) -> tuple[ClientPage, Page]:
    page = await context.new_page()
    client = ClientPage(context, page)
    page.on("websocket", lambda socket: client.sockets.append(socket))
    page.on("pageerror", lambda exc: client.errors.append(str(exc)))
    await page.goto("/")
    return client, page


async def test_log_in_with_the_provider_use_the_socket_and_log_out(
    context: BrowserContext, system: OidcSystem
) -> None:
    client, page = await _open(context)
    button = page.get_by_test_id("oidc-login")
    await expect(button).to_have_text("Log in with Test Provider")
    await button.click()

    # The provider's own pages.
    await expect(page).to_have_url(re.compile(re.escape(system.provider.url) + "/interaction/"))
    await page.locator('input[name="login"]').fill("alice")
    await page.locator('input[name="password"]').fill("any password")
    await page.get_by_role("button", name="Sign-in").click()
    await page.get_by_role("button", name="Continue").click()

    # Back home, logged in; the one-time code is gone from the address bar.
    await client.expect_state("open")
    await expect(page.get_by_test_id("session-user")).to_have_text("alice")
    assert page.url == system.base_url + "/"
    assert await page.evaluate("location.hash") == ""
    assert [s.url for s in client.sockets] == [
        system.base_url.replace("http://", "ws://") + "/api/runtime/agent"
    ]
    client_id = await send_intent(client, {"text": "hello through the provider"})
    await expect(client.console_entry("result", client_id)).to_contain_text(
        '"text":"hello through the provider"'
    )

    # Out: our session ends, and the provider's logout is offered.
    await page.get_by_test_id("logout").click()
    await expect(page.get_by_test_id("login")).to_be_visible()
    await expect(page.get_by_test_id("login-notice")).to_have_text("You logged out.")
    provider_logout = page.get_by_test_id("oidc-logout-link")
    await expect(provider_logout).to_have_text("Also sign out of Test Provider")
    await provider_logout.click()
    await page.get_by_role("button", name="Yes, sign me out").click()
    await expect(page).to_have_url(system.base_url + "/")
    await expect(page.get_by_test_id("login")).to_be_visible()
    await expect(page.get_by_test_id("oidc-login")).to_be_visible()
    await client.expect_state("closed")
    assert not client.errors, client.errors


async def test_cancel_at_the_provider_returns_to_the_login_page_with_a_message(
    context: BrowserContext, system: OidcSystem
) -> None:
    client, page = await _open(context)
    await page.get_by_test_id("oidc-login").click()
    await page.get_by_role("link", name="[ Cancel ]").click()
    await expect(page).to_have_url(system.base_url + "/")
    await expect(page.get_by_test_id("login-error")).to_have_text(
        "You cancelled the login at the identity provider."
    )
    await expect(page.get_by_test_id("login")).to_be_visible()
    assert client.sockets == []
    assert not client.errors, client.errors
