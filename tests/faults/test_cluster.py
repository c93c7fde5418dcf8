"""A 3-node NATS cluster with R3 buckets: the sessions stream's leader dies under load."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from bus import names
from bus.connection import connect
from bus.settings import Settings
from bus.state import ensure_state_surface
from tests.cluster import NatsCluster
from tests.faults.conftest import Report
from tests.faults.load import Load, lost_sessions
from tests.processes import processes
from tests.secure import SecureBus

pytestmark = pytest.mark.timeout(240)

REQUEST_TIMEOUT_S = 20.0
WRITE_RETRY_WINDOW_S = 15.0
ENV = {
    "SYMPHAINY_KV_REPLICAS": "3",
    "SYMPHAINY_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S),
    "SYMPHAINY_WRITE_RETRY_WINDOW_S": str(WRITE_RETRY_WINDOW_S),
    "SYMPHAINY_RETRY_AFTER_S": "1",
}
USERS = [f"user{i}" for i in range(6)]
SESSIONS_STREAM = names.kv_stream(names.SESSIONS_BUCKET)
ELECTION_TIMEOUT_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path, bus_secrets: SecureBus) -> Iterator[NatsCluster]:
    """Three routed nats-server processes with JetStream and authorization, formed."""
    config = json.loads(bus_secrets.config.read_text())
    started = NatsCluster(tmp_path / "cluster", config["authorization"]).start()
    try:
        yield started
    finally:
        started.stop()


async def stream_leader(nc: Client, stream: str) -> str | None:
    """The server leading ``stream``, or None while there is none (or nobody answers)."""
    try:
        info = await nc.jetstream(timeout=0.5).stream_info(stream)
    except Exception:
        return None
    return info.cluster.leader if info.cluster else None


async def new_leader(nc: Client, stream: str, old: str) -> str:
    """Wait until ``stream`` is led by a server other than ``old``."""
    async with asyncio.timeout(ELECTION_TIMEOUT_S):
        while True:
            leader = await stream_leader(nc, stream)
            if leader is not None and leader != old:
                return leader
            await asyncio.sleep(0.05)


async def test_killing_the_sessions_leader_loses_nothing_and_fails_no_user(
    cluster: NatsCluster, bus_secrets: SecureBus, tmp_path: Path, report: Report
) -> None:
    first = cluster.nodes[0]
    settings = Settings(nats_url=first.url, kv_replicas=3, dev_mode=True, _env_file=None)  # type: ignore[call-arg]
    bus_secrets.publish(first.url)
    setup = await connect(bus_secrets.harness(first.url), "tests-cluster-setup")
    try:
        await ensure_state_surface(setup.jetstream(), settings)
        leader = await stream_leader(setup, SESSIONS_STREAM)
    finally:
        await setup.close()
    assert leader is not None
    # Everyone talks to a node that survives: this fault is the election, not a reconnect.
    follower = next(node for node in cluster.nodes if node.name != leader)
    watcher = await connect(bus_secrets.harness(follower.url), "tests-cluster-watcher")
    try:
        async with processes(bus_secrets, follower.url, tmp_path / "logs", ENV) as system:
            await system.runtime()
            await system.runtime()
            web = await system.experience()
            await system.add_users(*USERS)

            async with Load(web.url, USERS, login_every=3) as load:
                await load.until(lambda: load.ok_since(0, "login") >= 30, 90, "warmed up")
                await asyncio.to_thread(cluster.node(leader).kill)
                killed_at = load.now()
                elected = await new_leader(watcher, SESSIONS_STREAM, leader)
                elected_at = load.now()
                await load.until(
                    lambda: (
                        load.settled_before(elected_at) and load.ok_since(elected_at, "login") >= 20
                    ),
                    90,
                    "settled after the election",
                )
            lost = await lost_sessions(web.url, load.sessions)
            across = [
                o
                for o in load.outcomes
                if o.kind == "login" and o.started < elected_at and o.ended > killed_at
            ]
            slowest = max((o.ended - o.started for o in across if o.ok), default=0.0)
            measured = report(
                "sessions stream leader SIGKILLed (3-node cluster, R3)",
                load,
                killed_at,
                len(lost),
                f"new leader {elected} seen after {elected_at - killed_at:.2f} s; "
                f"{sum(o.ok for o in across)} of {len(across)} logins across the election "
                f"succeeded, the slowest in {slowest:.2f} s",
            )
    finally:
        await watcher.close()

    assert [o.problem for o in load.outcomes if o.problem] == []
    assert lost == []
    # Writes across the election were retried by the runtime, not failed back to the user.
    assert measured.failed == 0, [o for o in load.outcomes if o.failed]
    assert across, "no login overlapped the election"
