"""The bus over real TLS on loopback: nats-server with our CA's certificate, every role
connecting through its context (``tls://`` URL and the CA), and what a client without our CA
gets."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import nats
import pytest

from bus.connection import connect
from bus.embedded import EmbeddedNats
from bus.identity import NatsIdentity
from bus.permissions import Role
from bus.settings import Settings
from experience.app import create_app
from experience.server import build_server
from intents import CreateUser, Ping, PingReply
from intents.request import ask
from runtime_worker.app import start_worker
from runtime_worker.passwords import Passwords
from tests.secure import SecureBus, secure_bus
from tests.stack import PASSWORD

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def tls_bus(tmp_path: Path) -> AsyncIterator[tuple[SecureBus, EmbeddedNats]]:
    """An embedded nats-server that requires TLS, with the role contexts written for it."""
    bus = secure_bus(tmp_path / "data", tls_hostnames=("localhost", "127.0.0.1"))
    server = await EmbeddedNats(tmp_path / "nats", config=bus.config).astart()
    try:
        bus.publish(server.url)
        yield bus, server
    finally:
        server.stop()


async def test_every_role_works_over_tls_and_a_login_goes_through(
    tls_bus: tuple[SecureBus, EmbeddedNats], tmp_path: Path, cheap_passwords: Passwords
) -> None:
    bus, server = tls_bus
    assert server.url.startswith("tls://127.0.0.1:")
    context = NatsIdentity.from_context(bus.context(Role.RUNTIME))
    assert context.url == server.url
    assert context.ca is not None
    assert context.ca.read_bytes() == bus.bus.tls.ca.read_bytes()  # type: ignore[union-attr]
    settings = Settings(data_dir=bus.data_dir, dev_mode=True, _env_file=None)  # type: ignore[call-arg]
    worker = await start_worker(settings, passwords=cheap_passwords)
    web = build_server(create_app(settings), settings, "127.0.0.1", 0)
    try:
        admin = await connect(NatsIdentity.from_context(bus.context(Role.ADMIN)), "tests-admin")
        try:
            await ask(admin, CreateUser(username="alice", password=PASSWORD), 5)  # type: ignore[arg-type]
            pong = await ask(admin, Ping(actor="tests"), 5)
            assert isinstance(pong, PingReply)
        finally:
            await admin.close()
        task = asyncio.create_task(web.serve())
        while not web.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.bound_port}") as http:
            login = await http.post(
                "/api/auth/login", json={"username": "alice", "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
            token = login.json()["session_token"]
            mine = await http.get("/api/sessions", headers={"Authorization": f"Bearer {token}"})
            assert mine.status_code == 200
        web.should_exit = True
        await task
    finally:
        await worker.stop()


async def test_a_client_without_our_ca_or_without_tls_cannot_connect(
    tls_bus: tuple[SecureBus, EmbeddedNats], tmp_path: Path
) -> None:
    bus, server = tls_bus
    runtime = NatsIdentity.from_context(bus.context(Role.RUNTIME))
    stranger = secure_bus(tmp_path / "other", tls_hostnames=("localhost",)).bus.tls
    assert stranger is not None

    async def quiet(exc: Exception) -> None:
        return None

    for wrong in (
        replace(runtime, ca=stranger.ca),  # a server signed by a CA we do not trust
        replace(runtime, ca=None, url=server.url.replace("tls://", "nats://")),  # system CAs only
    ):
        options = wrong.nats_options() | {"allow_reconnect": False, "error_cb": quiet}
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.wait_for(nats.connect(**options), 5)
