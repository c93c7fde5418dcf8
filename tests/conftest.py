"""Fixtures shared by every tier: a real nats-server, a client, settings.

Tiers are chosen by folder: ``tests/unit`` (no I/O), ``tests/nats`` (a real server),
``tests/http`` (real uvicorn + runtime + NATS). Each folder marks its tests so one tier can run
alone, e.g. ``pytest -m nats``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from bus.connection import connect
from bus.settings import Settings
from runtime_worker.passwords import Passwords
from tests import backends
from tests.backends import NatsServer

TIER_BY_FOLDER = {
    "unit": "unit",
    "js": "unit",
    "nats": "nats",
    "http": "http",
    "ws": "ws",
    "e2e": "e2e",
    "browser": "browser",
    "deploy": "deploy",
    "faults": "faults",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the tier of the folder it lives in."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for folder, marker in TIER_BY_FOLDER.items():
            if folder in parts:
                item.add_marker(getattr(pytest.mark, marker))


def pytest_report_header() -> str:
    """Say which NATS the run uses, so a log shows whether the containers really ran."""
    return backends.choose().describe()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh NATS with JetStream for this test: a container, the embedded binary or NATS_URL.

    See ``tests/backends.py`` for how it is chosen; ``SYMPHAINY_TEST_NATS`` forces one.
    """
    backend = backends.choose()
    if backend.make is None:
        message = backend.describe()
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}, and CI must run it")
        pytest.skip(f"{message}; CI=true makes this a failure")
    server = backend.make(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def settings(nats_server: NatsServer, tmp_path: Path) -> Settings:
    """Settings pointing at the fixture's server, in dev mode, with a private data dir."""
    return Settings(
        nats_url=nats_server.url,
        data_dir=tmp_path / "data",
        dev_mode=True,
        request_timeout_s=2.0,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A nats-py client connected to the fixture's server."""
    client = await connect(nats_server.url, "tests")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="session")
def cheap_passwords() -> Passwords:
    """Argon2 with minimal cost: tests are about behaviour, not hashing cost."""
    return Passwords(PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),)))
