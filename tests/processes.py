"""The system as separate OS processes (``symphainy runtime`` and ``symphainy experience``),
and a client that drives it over HTTP and WebSocket as a user would.

Each process runs in its own session, dies with the test process, logs to a file in the test's
temp dir, and is started only once it announced itself on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bus.connection import connect as nats_connect
from bus.embedded import _die_with_parent
from bus.identity import NatsIdentity
from bus.permissions import Role
from intents import CreateUser, CreateUserReply
from intents.request import ask
from tests.secure import SecureBus

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
PASSWORD = "a long enough password"
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Component:
    """One running ``symphainy`` process."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    announced: str

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    @property
    def running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.process.returncode is None

    async def kill(self) -> None:
        """SIGKILL, and wait until it is reaped (its sockets are closed by then)."""
        if self.running:
            self.process.kill()
        await self.process.wait()

    async def terminate(self) -> int:
        """SIGTERM, as an operator would stop it; the exit code."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)

    def log(self) -> str:
        """What it logged so far."""
        return self.log_path.read_text(errors="replace")


def component_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """The test's environment without the developer's ``SYMPHAINY_*``, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYMPHAINY_")}
    env.update(overrides)
    return env


async def start_component(
    name: str, args: list[str], log_dir: Path, env: Mapping[str, str], announce: re.Pattern[str]
) -> Component:
    """Start ``python -m symphainy ARGS`` and wait for the stdout line matching ``announce``."""
    log_path = _log_file(log_dir, name)
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "symphainy",
            *args,
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=component_env(env),
            preexec_fn=_die_with_parent,
        )
    assert process.stdout is not None
    try:
        while True:
            raw = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
            line = raw.decode()
            if not line:
                code = await process.wait()
                raise AssertionError(f"{name} exited with {code}:\n{log_path.read_text()}")
            if announce.search(line):
                return Component(name, process, log_path, line.strip())
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise


def _log_file(log_dir: Path, name: str) -> Path:
    log_dir.mkdir(parents=True, exist_ok=True)
    return log_dir / f"{name}.log"


@dataclass
class Processes:
    """The processes of one test, all killed at teardown."""

    nats_url: str
    log_dir: Path
    # Where each role's NATS context is, as ``symphainy up`` writes it (tests/secure.py).
    contexts: Mapping[Role, Path]
    harness: NatsIdentity
    env: dict[str, str] = field(default_factory=dict)
    started: list[Component] = field(default_factory=list)
    _count: int = 0

    async def runtime(self, workers: int = 1, nats_url: str | None = None) -> Component:
        """Start ``symphainy runtime``; returns once its workers answer on the bus."""
        self._count += 1
        url = nats_url or self.nats_url
        component = await start_component(
            f"runtime-{self._count}",
            [
                "runtime",
                "--nats-url",
                url,
                "--nats-context",
                str(self.contexts[Role.RUNTIME]),
                "--workers",
                str(workers),
            ],
            self.log_dir,
            self.env,
            re.compile(r"runtime worker\(s\) on "),
        )
        self.started.append(component)
        return component

    async def experience(self, nats_url: str | None = None) -> Experience:
        """Start ``symphainy experience`` on a free port; returns once it serves HTTP."""
        self._count += 1
        url = nats_url or self.nats_url
        name = f"experience-{self._count}"
        component = await start_component(
            name,
            [
                "experience",
                "--nats-url",
                url,
                "--nats-context",
                str(self.contexts[Role.EXPERIENCE]),
                "--port",
                "0",
                "--data-dir",
                str(self.log_dir / name),
                "--dev",
            ],
            self.log_dir,
            self.env,
            re.compile(r"experience plane up .*: http://"),
        )
        self.started.append(component)
        found = re.search(r"(http://\S+)", component.announced)
        assert found is not None
        return Experience(component, found.group(1))

    async def add_users(self, *names: str) -> None:
        """Create users through the runtime, as ``symphainy users add`` does."""
        nc = await nats_connect(self.harness, "tests-admin")
        try:
            for name in names:
                reply = await ask(nc, CreateUser(username=name, password=PASSWORD), 10.0)  # type: ignore[arg-type]
                assert isinstance(reply, CreateUserReply)
        finally:
            await nc.close()

    async def kill_all(self) -> None:
        """SIGKILL whatever still runs."""
        for component in self.started:
            await component.kill()


@dataclass
class Experience:
    """A running Experience Plane process and its base URL."""

    component: Component
    url: str

    @property
    def ws_url(self) -> str:
        """The agent socket's URL."""
        return self.url.replace("http://", "ws://") + "/api/runtime/agent"

    def http(self, token: str | None = None, timeout: float = 30.0) -> httpx.AsyncClient:
        """An HTTP client for this Experience Plane, with a Bearer token if given."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    async def login(self, username: str) -> dict[str, Any]:
        """Log in; the 200 body (fails the test otherwise)."""
        async with self.http() as http:
            response = await http.post(
                "/api/auth/login", json={"username": username, "password": PASSWORD}
            )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def socket(self, token: str) -> Any:
        """A ``connect()`` context for the agent socket, the token as subprotocol."""
        return connect(
            self.ws_url,
            subprotocols=["symphainy.v1", f"bearer.{token}"],  # type: ignore[list-item]
            open_timeout=10,
            close_timeout=2,
        )


@asynccontextmanager
async def processes(
    bus: SecureBus, nats_url: str, log_dir: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[Processes]:
    """A ``Processes`` on the bus of ``bus`` at ``nats_url``, all killed on exit."""
    contexts = {role: bus.context(role) for role in Role}
    running = Processes(nats_url, log_dir, contexts, bus.harness(nats_url), dict(env or {}))
    try:
        yield running
    finally:
        await running.kill_all()


async def echo(ws: ClientConnection, client_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """Send an ``echo`` intent on an admitted socket and return its final frame."""
    await ws.send(
        json.dumps({"type": "intent", "id": client_id, "intent": "echo", "payload": {"n": 1}})
    )
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("id") == client_id and frame["type"] in ("result", "error"):
                return dict(frame)
