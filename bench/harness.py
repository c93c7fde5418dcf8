"""What every benchmark starts from: an embedded nats-server with authorization on (as
``symphainy up`` runs it), one runtime worker, a client, and optionally the Experience Plane on
a free port. Everything lives in a temporary directory.

The benchmark's own client is ``bench``, a user with every permission that only the benchmarks'
server knows (for setup and for the raw floors); ``System.identity(role)`` connects as a role.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from bus.connection import connect
from bus.embedded import EmbeddedNats
from bus.identity import NatsIdentity
from bus.permissions import Role
from bus.provision import (
    ensure_secrets,
    role_identity,
    write_contexts,
    write_server_config,
)
from bus.settings import Settings
from experience.app import create_app
from experience.server import build_server
from runtime_worker.app import start_worker


async def timed(
    call: Callable[[], Awaitable[object]], n: int, *, warmup: int, scale: float
) -> list[float]:
    """Durations of ``n`` sequential calls after ``warmup`` untimed ones, in seconds times ``scale``
    (1e3 for milliseconds, 1e6 for microseconds)."""
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * scale)
    return samples


def secured_nats(data_dir: Path) -> tuple[EmbeddedNats, NatsIdentity, dict[Role, NatsIdentity]]:
    """Start an embedded nats-server with the role users and ``bench``; the role contexts are
    written into ``data_dir`` so workers started on it find their identity."""
    bus = ensure_secrets(data_dir)
    password = secrets.token_urlsafe(24)
    config = write_server_config(bus, [{"user": "bench", "password": password}])
    server = EmbeddedNats(data_dir / "nats", config=config).start()
    write_contexts(bus, data_dir, server.url)
    roles = {role: role_identity(bus, role, server.url) for role in Role}
    return server, NatsIdentity(server.url, "bench", password), roles


@dataclass
class System:
    """A running system for one benchmark."""

    settings: Settings
    nc: Client
    base_url: str | None
    roles: dict[Role, NatsIdentity]


@asynccontextmanager
async def running_system(*, http: bool = False, **overrides: Any) -> AsyncIterator[System]:
    """Start the system (with HTTP if asked) with settings ``overrides``; yield it; stop it all."""
    with tempfile.TemporaryDirectory() as tmp:
        server, bench, roles = secured_nats(Path(tmp))
        try:
            settings = Settings(data_dir=Path(tmp), dev_mode=True, **overrides)
            worker = await start_worker(settings)
            nc = await connect(bench, "bench")
            web = build_server(create_app(settings), settings, "127.0.0.1", 0) if http else None
            serving = asyncio.create_task(web.serve()) if web else None
            try:
                base_url = None
                if web is not None:
                    while not web.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
                        await asyncio.sleep(0.01)
                    base_url = f"http://127.0.0.1:{web.bound_port}"
                yield System(settings, nc, base_url, roles)
            finally:
                if web is not None and serving is not None:
                    web.should_exit = True
                    await serving
                await nc.close()
                await worker.stop()
        finally:
            server.stop()
