"""``nats micro`` against real workers: every worker answers ``$SRV.PING/INFO/STATS`` as
``symphainy-runtime``, to the inspector, with the counts of the intents it executed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from importlib.metadata import version
from typing import Any

import pytest
from nats.aio.client import Client

from bus import names
from bus.connection import connect
from bus.permissions import Role
from bus.settings import Settings
from intents import REPLY_OF, Ping, PingReply, VerifySession, new_id, utcnow
from intents.request import request
from runtime_worker.app import Worker, start_worker
from runtime_worker.passwords import Passwords
from tests.backends import NatsServer
from tests.secure import SecureBus

pytestmark = pytest.mark.nats


@pytest.fixture
async def workers(settings: Settings, cheap_passwords: Passwords) -> AsyncIterator[list[Worker]]:
    started = [await start_worker(settings, passwords=cheap_passwords) for _ in range(2)]
    try:
        yield started
    finally:
        for worker in started:
            await worker.stop()


@pytest.fixture
async def inspector(nats_server: NatsServer, bus_secrets: SecureBus) -> AsyncIterator[Client]:
    client = await connect(bus_secrets.role(Role.INSPECTOR, nats_server.url), "tests-inspector")
    try:
        yield client
    finally:
        await client.close()


async def ask_all(nc: Client, subject: str, expected: int) -> list[dict[str, Any]]:
    """Every answer to one request, as ``nats micro ls`` gathers them: wait for ``expected``
    answers (failing after 5 s), then a flush round trip for any surplus one already sent."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(subject, b"", reply=inbox)
    answers = [json.loads((await sub.next_msg(timeout=5)).data) for _ in range(expected)]
    await nc.flush()
    while sub.pending_msgs:
        answers.append(json.loads((await sub.next_msg(timeout=1)).data))
    await sub.unsubscribe()
    return answers


def by_name(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {endpoint["name"]: endpoint for endpoint in stats["endpoints"]}


async def test_every_worker_answers_ping_and_info_as_symphainy_runtime(
    workers: list[Worker], inspector: Client
) -> None:
    ids = {w.worker_id for w in workers}
    for subject in ("$SRV.PING", f"$SRV.PING.{names.RUNTIME_SERVICE}"):
        pings = await ask_all(inspector, subject, len(workers))
        assert {p["id"] for p in pings} == ids
        for ping in pings:
            assert ping["type"] == "io.nats.micro.v1.ping_response"
            assert ping["name"] == "symphainy-runtime"
            assert ping["version"] == version("symphainy")

    one = workers[0].worker_id
    [info] = await ask_all(inspector, f"$SRV.INFO.{names.RUNTIME_SERVICE}.{one}", 1)
    assert info["type"] == "io.nats.micro.v1.info_response"
    assert info["id"] == one
    endpoints = {e["name"]: e for e in info["endpoints"]}
    assert set(endpoints) == {t.__name__ for t in REPLY_OF}
    for intent_type in REPLY_OF:
        endpoint = endpoints[intent_type.__name__]
        assert endpoint["subject"] == intent_type.subject
        assert endpoint["queue_group"] == names.RUNTIME_QUEUE


async def test_stats_count_every_request_and_only_service_failures_as_errors(
    workers: list[Worker], inspector: Client, nc: Client
) -> None:
    before = {s["id"]: by_name(s) for s in await ask_all(inspector, "$SRV.STATS", 2)}

    for _ in range(20):
        await request(inspector, Ping(actor="tests"), PingReply, 2.0)
    # A refusal the caller earned: an answer, not a service error.
    refused = VerifySession(session_id=new_id(), user_id=new_id(), actor="tests")
    for _ in range(3):
        reply = await nc.request(refused.subject, refused.to_wire(), timeout=2)
        assert json.loads(reply.data)["error"]["code"] == "session_not_found"
    # Past its deadline when it arrives: the service failed the caller.
    late = Ping(actor="tests", deadline=utcnow() - timedelta(seconds=1))
    reply = await nc.request(late.subject, late.to_wire(), timeout=2)
    assert json.loads(reply.data)["error"]["code"] == "deadline_exceeded"

    answers = await ask_all(inspector, f"$SRV.STATS.{names.RUNTIME_SERVICE}", 2)
    assert {a["id"] for a in answers} == {w.worker_id for w in workers}
    after = {a["id"]: by_name(a) for a in answers}

    def delta(endpoint: str, field: str) -> int:
        return sum(after[w][endpoint][field] - before[w][endpoint][field] for w in after)

    assert delta("Ping", "num_requests") == 21
    assert delta("Ping", "num_errors") == 1
    assert delta("VerifySession", "num_requests") == 3
    assert delta("VerifySession", "num_errors") == 0
    assert delta("CreateUser", "num_requests") == 0
    # The queue group shared the pings: both workers took some (20 requests, 2 members).
    assert all(after[w]["Ping"]["num_requests"] > before[w]["Ping"]["num_requests"] for w in after)
    for stats in after.values():
        ping = stats["Ping"]
        assert ping["processing_time"] > 0
        assert ping["average_processing_time"] == ping["processing_time"] // ping["num_requests"]
    assert "deadline_exceeded" in {after[w]["Ping"]["last_error"] for w in after}
    [one] = await ask_all(
        inspector, f"$SRV.STATS.{names.RUNTIME_SERVICE}.{workers[1].worker_id}", 1
    )
    assert one["id"] == workers[1].worker_id
    assert one["type"] == "io.nats.micro.v1.stats_response"


async def test_a_stopped_worker_stops_answering(workers: list[Worker], inspector: Client) -> None:
    await workers[1].stop()
    workers.pop()
    answers = await ask_all(inspector, "$SRV.PING", 1)
    assert [a["id"] for a in answers] == [workers[0].worker_id]
