"""The web client in a real chromium against the real stack: login, the socket, the agent
console, revocation from elsewhere, and recovery when the runtime comes back.

Every wait is on page state (``expect``, page events), never on a fixed sleep.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from playwright.async_api import expect

from tests.browser.conftest import ClientPage, OpenClient
from tests.stack import Stack

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


async def send_intent(client: ClientPage, payload: dict[str, object]) -> str:
    """Send an echo intent from the console; returns the client id the page gave it."""
    page = client.page
    await page.get_by_test_id("intent-name").fill("echo")
    await page.get_by_test_id("intent-payload").fill(json.dumps(payload))
    before = await page.locator('#console-log li[data-type="sent"]').count()
    await page.get_by_test_id("intent-send").click()
    sent = page.locator('#console-log li[data-type="sent"]').nth(before)
    client_id = await sent.get_attribute("data-id")
    assert client_id
    return client_id


async def test_no_socket_before_login_and_a_bad_password_shows_an_error(
    open_client: OpenClient,
) -> None:
    client = await open_client()
    await expect(client.login_form).to_be_visible()
    await client.login("alice", "not the password")
    await expect(client.page.get_by_test_id("login-error")).to_have_text(
        "Wrong username or password."
    )
    await expect(client.page.get_by_test_id("app")).to_be_hidden()
    await client.page.reload()
    await expect(client.login_form).to_be_visible()
    assert await client.client("client.state") == "logged-out"
    assert client.sockets == [], "a socket was attempted before login"


async def test_login_opens_the_socket_and_an_echo_intent_round_trips(
    open_client: OpenClient, web_url: str
) -> None:
    client = await open_client()
    assert client.sockets == []
    await client.login("alice")
    await client.expect_state("open")
    page = client.page
    await expect(page.get_by_test_id("session-user")).to_have_text("alice")
    session_id = await client.session_id()
    assert SESSION_ID.match(session_id)
    assert [socket.url for socket in client.sockets] == [
        web_url.replace("http://", "ws://") + "/api/runtime/agent"
    ], "one socket, with the token kept out of its URL"

    client_id = await send_intent(client, {"text": "hello from chromium", "items": [1, 2]})
    result = client.console_entry("result", client_id)
    await expect(result).to_contain_text('"text":"hello from chromium"')
    await expect(client.console_entry("ack", client_id)).to_have_count(1)
    await expect(client.console_entry("event", client_id)).to_have_count(2)

    sessions = client.session_items
    await expect(sessions).to_have_count(1)
    await expect(sessions.first).to_have_attribute("data-session-id", session_id)
    await expect(sessions.first).to_contain_text("this tab")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)


async def test_revoking_the_session_elsewhere_returns_to_login_without_retries(
    open_client: OpenClient,
) -> None:
    first = await open_client()
    await first.login("alice")
    await first.expect_state("open")
    revoked = await first.session_id()

    second = await open_client()
    await second.login("alice")
    await second.expect_state("open")
    row = second.page.locator(f'#sessions-list li[data-session-id="{revoked}"]')
    await row.get_by_test_id("revoke").click()

    await expect(first.login_form).to_be_visible()
    await expect(first.page.get_by_test_id("login-notice")).to_contain_text("revoked")
    await first.expect_state("closed")
    assert await first.client("client.reconnectScheduled") is False
    assert await first.client("client.session") is None
    # The other session is untouched, and the revoked page has made no further attempt.
    await second.expect_state("open")
    await expect(second.session_items).to_have_count(1)
    assert len(first.sockets) == 1, "the page retried a revoked session"


async def test_log_out_everywhere_else_and_log_out(open_client: OpenClient, web_url: str) -> None:
    first = await open_client()
    await first.login("alice")
    await first.expect_state("open")
    second = await open_client()
    await second.login("alice")
    await second.expect_state("open")
    token = await second.client("client.session.session_token")

    await second.page.get_by_test_id("logout-others").click()
    await expect(first.login_form).to_be_visible()
    await expect(second.session_items).to_have_count(1)
    await second.expect_state("open")

    # The page forgets the session at once and revokes it on the server in the background: wait
    # for that request's answer, not for the page, before asking the server.
    async with second.page.expect_response("**/api/auth/logout") as logout:
        await second.page.get_by_test_id("logout").click()
    assert (await logout.value).status == 204
    await expect(second.login_form).to_be_visible()
    await expect(second.page.get_by_test_id("login-notice")).to_have_text("You logged out.")
    async with httpx.AsyncClient(base_url=web_url) as http:
        response = await http.get("/api/sessions", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, "logout must revoke the session on the server"
    assert len(first.sockets) == 1
    assert len(second.sockets) == 1


async def test_work_sent_while_the_runtime_is_away_completes_on_the_same_socket(
    open_client: OpenClient, stack: Stack
) -> None:
    client = await open_client()
    await client.login("alice")
    await client.expect_state("open")
    await stack.stop_workers()
    client_id = await send_intent(client, {"text": "queued"})
    await expect(client.console_entry("ack", client_id)).to_have_count(1)
    await client.expect_state("open")
    await stack.start_worker()
    await expect(client.console_entry("result", client_id)).to_contain_text('"text":"queued"')
    assert len(client.sockets) == 1


async def test_the_page_shows_reconnecting_without_a_runtime_and_recovers_by_itself(
    open_client: OpenClient, stack: Stack
) -> None:
    client = await open_client()
    await client.login("alice")
    await client.expect_state("open")
    await stack.stop_workers()
    # A live socket outlives the runtime (its work waits in the queue); a new one cannot be
    # admitted. Reloading makes the page resume its stored session and need a new socket.
    await client.page.reload()
    await client.expect_state("reconnecting")
    retries = client.page.locator('#console-log li[data-type="retry"]')
    await expect(retries.first).to_contain_text("close 4503")
    await expect(client.page.get_by_test_id("app")).to_be_visible()
    assert len(client.sockets) >= 2

    await stack.start_worker()
    # Backoff is capped at 20 s; the runtime was away for only a few attempts.
    await client.expect_state("open", timeout=30_000)
    client_id = await send_intent(client, {"text": "back again"})
    await expect(client.console_entry("result", client_id)).to_contain_text('"text":"back again"')
    await expect(client.page.get_by_test_id("login-form")).to_be_hidden()
