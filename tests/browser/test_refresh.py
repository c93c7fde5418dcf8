"""Token refresh in a real chromium: with 3-second tokens, the page refreshes ahead of expiry
and hands each new token to its open socket in-band, so the one socket outlives many tokens."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.conftest import OpenClient
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
