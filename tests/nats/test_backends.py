"""The NATS fixture itself: the backend it claims to be, and restarts that keep URL and data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from nats.aio.client import Client

from bus.connection import connect
from bus.identity import NatsIdentity
from tests import backends
from tests.backends import NatsServer
from tests.secure import secure_bus

pytestmark = pytest.mark.timeout(60)


def _our_containers() -> list[dict[str, object]]:
    filters = quote(json.dumps({"label": [f"{backends.OWNER_LABEL}={os.getpid()}"]}), safe="")
    status, body = backends.docker_api("GET", f"/containers/json?filters={filters}")
    assert status == 200
    return list(json.loads(body))


def test_the_fixture_runs_the_backend_the_header_names(nats_server: NatsServer) -> None:
    backend = backends.choose()
    if backend.name == "docker":
        assert isinstance(nats_server, backends.ContainerServer)
        running = _our_containers()
        assert nats_server.container_id in [c["Id"] for c in running]
        assert all(c["Image"] == backends.IMAGE for c in running)
        assert all(c["HostConfig"]["NetworkMode"] == "host" for c in running)  # type: ignore[index]
    elif backend.name == "embedded":
        assert isinstance(nats_server, backends.EmbeddedServer)
    assert nats_server.url.startswith("nats://127.0.0.1:")


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_a_restart_keeps_the_url_and_the_jetstream_data(
    nats_server: NatsServer, nc: Client, how: str, harness: NatsIdentity
) -> None:
    kv = await nc.jetstream().create_key_value(bucket="survives")
    await kv.put("key", b"value")
    url = nats_server.url
    getattr(nats_server, how)()
    nats_server.start()
    assert nats_server.url == url
    again = await connect(harness, "tests-after-restart")
    try:
        entry = await (await again.jetstream().key_value("survives")).get("key")
        assert entry.value == b"value"
    finally:
        await again.close()


@pytest.mark.docker
def test_containers_of_dead_test_runs_are_removed(tmp_path: Path) -> None:
    if backends.choose().name != "docker":
        pytest.skip("only the Docker backend starts containers")
    # A pid that surely belongs to no process any more: a child that has exited and been reaped.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True
    )
    config = secure_bus(tmp_path / "orphan-data").config
    orphan = backends.ContainerServer(tmp_path / "orphan", config, owner_pid=int(dead.stdout))
    orphan.start()
    orphan_id = orphan.container_id
    try:
        assert orphan_id in backends.reap_orphans()
        status, _ = backends.docker_api("GET", f"/containers/{orphan_id}/json")
        assert status == 404
    finally:
        orphan.close()
