"""A whole running system for HTTP and WebSocket tests: real NATS, runtime worker(s), uvicorn.

Sockets are opened with the ``websockets`` client over TCP, so close codes are the ones a
browser would see, not the in-process test client's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bus.settings import Settings
from experience.app import create_app
from experience.server import ExperienceServer, build_server
from intents import CreateUser
from intents.request import ask
from runtime_worker.app import Worker, start_worker
from runtime_worker.passwords import Passwords

PASSWORD = "a long enough password"


@dataclass
class Stack:
    """A running system and the ways a test drives it."""

    settings: Settings
    nc: Client
    passwords: Passwords
    server: ExperienceServer | None = None
    serving: asyncio.Task[None] | None = None
    workers: list[Worker] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.bound_port}"

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/api/runtime/agent"

    async def start_worker(self) -> Worker:
        worker = await start_worker(self.settings, passwords=self.passwords)
        self.workers.append(worker)
        return worker

    async def stop_workers(self) -> None:
        while self.workers:
            await self.workers.pop().stop()

    async def start_server(self) -> None:
        app = create_app(self.settings)
        self.server = build_server(app, self.settings, "127.0.0.1", 0)
        self.serving = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.serving.done():
                self.serving.result()
            await asyncio.sleep(0.01)

    async def stop_server(self) -> None:
        if self.server is not None and self.serving is not None:
            self.server.should_exit = True
            await self.serving
            self.serving = None

    async def add_user(self, name: str) -> None:
        await ask(self.nc, CreateUser(username=name, password=PASSWORD), 5.0)  # type: ignore[arg-type]

    async def login(self, name: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            response = await http.post(
                "/api/auth/login", json={"username": name, "password": PASSWORD}
            )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def open(
        self,
        token: str | None = None,
        *,
        query: bool = False,
        origin: str | None = None,
        subprotocols: list[str] | None = None,
        url: str | None = None,
    ) -> Any:
        """A connect() context for a socket with the token as subprotocol (or query string).

        ``url`` replaces the socket URL, e.g. to go through a proxy.
        """
        url = url or self.ws_url
        protocols = subprotocols
        if token is not None and query:
            url += f"?session_token={token}"
        elif token is not None and protocols is None:
            protocols = ["symphainy.v1", f"bearer.{token}"]
        headers = {"Origin": origin} if origin else None
        return connect(
            url,
            subprotocols=protocols,  # type: ignore[arg-type]
            additional_headers=headers,
            open_timeout=5,
            close_timeout=2,
        )


async def close_code(ws: ClientConnection, timeout: float = 5.0) -> int:
    """Wait for the server to close the socket; fail if it sends anything first."""
    try:
        message = await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as closed:
        received = closed.rcvd
    else:
        raise AssertionError(f"expected a close, got a message: {message!r}")
    assert received is not None, "closed without a close frame"
    return received.code


async def next_frame(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    """The next JSON frame."""
    return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout)))


async def frames_until_final(ws: ClientConnection, client_id: str) -> list[dict[str, Any]]:
    """Frames for ``client_id`` up to and including its result or error."""
    seen = []
    while True:
        frame = await next_frame(ws)
        if frame.get("id") != client_id:
            continue
        seen.append(frame)
        if frame["type"] in ("result", "error"):
            return seen


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def make_stack(
    settings: Settings, nc: Client, cheap_passwords: Passwords
) -> AsyncIterator[StackFactory]:
    """Build stacks with settings overrides; everything is stopped at teardown."""
    stacks: list[Stack] = []

    async def _make(workers: int = 1, **overrides: Any) -> Stack:
        stack = Stack(
            settings=settings.model_copy(update=overrides),
            nc=nc,
            passwords=cheap_passwords,
        )
        stacks.append(stack)
        for _ in range(workers):
            await stack.start_worker()
        await stack.start_server()
        return stack

    yield _make
    for stack in stacks:
        await stack.stop_server()
        await stack.stop_workers()


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    """A stack with default settings and users alice and bob."""
    built = await make_stack()
    await built.add_user("alice")
    await built.add_user("bob")
    return built
