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
from bus.identity import NatsIdentity
from bus.settings import Settings
from runtime_worker.passwords import Passwords
from tests import backends
from tests.backends import NatsServer
from tests.secure import SecureBus, secure_bus

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
def bus_secrets(tmp_path: Path) -> SecureBus:
    """The role identities of this test's NATS, in the data directory as ``symphainy up`` keeps
    them (so components started on ``settings`` find their own)."""
    return secure_bus(tmp_path / "data")


@pytest.fixture
def expect_violations() -> None:
    """Ask for this in a test that makes nats-server refuse something on purpose (an attack):
    the server's violations then do not fail it (read them with ``nats_server.violations()``)."""


@pytest.fixture
def nats_server(
    request: pytest.FixtureRequest, tmp_path: Path, bus_secrets: SecureBus
) -> Iterator[NatsServer]:
    """A fresh NATS with JetStream and authorization for this test: a container or the embedded
    binary (``tests/backends.py``; ``SYMPHAINY_TEST_NATS`` forces one).

    A permissions violation in the server's log fails the test, unless it asked for
    ``expect_violations``: every component must have every permission it uses.
    """
    backend = backends.choose()
    if backend.make is None:
        message = backend.describe()
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}, and CI must run it")
        pytest.skip(f"{message}; CI=true makes this a failure")
    server = backend.make(tmp_path / "nats", bus_secrets.config)
    server.start()
    bus_secrets.publish(server.url)
    try:
        yield server
        if "expect_violations" not in request.fixturenames:
            refused = server.violations()
            assert not refused, "nats-server refused a permission:\n" + "\n".join(refused)
    finally:
        server.close()


@pytest.fixture
def harness(nats_server: NatsServer, bus_secrets: SecureBus) -> NatsIdentity:
    """The test harness's own identity on the fixture's server (every permission)."""
    return bus_secrets.harness(nats_server.url)


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
async def nc(harness: NatsIdentity) -> AsyncIterator[Client]:
    """A nats-py client connected to the fixture's server as the test harness."""
    client = await connect(harness, "tests")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="session")
def cheap_passwords() -> Passwords:
    """Argon2 with minimal cost: tests are about behaviour, not hashing cost."""
    return Passwords(PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),)))
