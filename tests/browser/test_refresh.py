"""Token refresh in a real chromium: with 3-second tokens, the page refreshes ahead of expiry
and hands each new token to its open socket in-band, so the one socket outlives many tokens."""

from __future__ import annotations

import pytest
from playwright.async_api import Request, expect

from tests.browser.conftest import ClientPage, OpenClient
from tests.stack import Stack, StackFactory

TOKEN_TTL_S = 3


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    """A stack whose tokens live three seconds (the session itself lives on)."""
    built = await make_stack(token_ttl_s=TOKEN_TTL_S)
    await built.add_user("alice")
    return built


async def test_the_socket_outlives_its_first_tokens_through_in_band_refreshes(
    open_client: OpenClient,
) -> None:
    client = await open_client()
    await client.login("alice")
    await client.expect_state("open")
    first_token = await client.client("client.session.session_token")
    refreshed = client.page.locator('#console-log li[data-type="refreshed"]')
    # Each refresh comes at most 4/5 into a token's life, so the third ``refreshed`` frame
    # arrives after the first token has expired: the socket lived on past it.
    await expect(refreshed).to_have_count(3, timeout=4 * TOKEN_TTL_S * 1000)
    assert await client.client("client.session.session_token") != first_token
    await client.expect_state("open")
    assert len(client.sockets) == 1, "the socket was replaced instead of refreshed"
    await expect(client.page.locator('#console-log li[data-type="retry"]')).to_have_count(0)


async def test_tabs_sharing_a_session_refresh_one_at_a_time_and_adopt_each_others_tokens(
    open_client: OpenClient,
) -> None:
    first = await open_client()
    await first.login("alice")
    await first.expect_state("open")
    assert await first.page.evaluate("Boolean(navigator.locks && window.BroadcastChannel)")

    in_flight = 0
    overlaps: list[int] = []

    def started(request: Request) -> None:
        nonlocal in_flight
        if request.url.endswith("/api/session/refresh"):
            in_flight += 1
            overlaps.append(in_flight)

    def ended(request: Request) -> None:
        nonlocal in_flight
        if request.url.endswith("/api/session/refresh"):
            in_flight -= 1

    # A tab opened from the page starts with a copy of its sessionStorage: the same session.
    async with first.context.expect_page() as opened:
        await first.page.evaluate("window.open('/')")
    second_page = await opened.value
    second = ClientPage(first.context, second_page)
    for page in (first.page, second_page):
        page.on("request", started)
        page.on("requestfinished", ended)
        page.on("requestfailed", ended)
    await second.expect_state("open")
    assert await second.session_id() == await first.session_id()

    # Three refreshes between them: whoever refreshes, the other adopts the token in-band.
    seen = second_page.locator('#console-log li[data-type="refreshed"]')
    await expect(seen).to_have_count(3, timeout=4 * TOKEN_TTL_S * 1000)
    token = await first.client("client.session.session_token")
    await second_page.wait_for_function(
        "token => window.symphainy.session.session_token === token", arg=token
    )
    assert overlaps, "no refresh request was seen"
    assert max(overlaps) == 1, f"refreshes overlapped: {overlaps}"
    for tab in (first, second):
        await tab.expect_state("open")
        await expect(tab.page.locator('#console-log li[data-type="retry"]')).to_have_count(0)
