"""Runtime workers die under load: one of two (SIGKILL), then all of them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.backends import NatsServer
from tests.faults.conftest import Report
from tests.faults.load import Load, lost_sessions
from tests.processes import echo, processes
from tests.secure import SecureBus
from tests.stack import close_code, next_frame

pytestmark = pytest.mark.timeout(180)

REQUEST_TIMEOUT_S = 5.0
ENV = {"SYMPHAINY_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S), "SYMPHAINY_RETRY_AFTER_S": "1"}
USERS = [f"user{i}" for i in range(6)]


async def test_killing_one_of_two_workers_fails_only_what_it_held(
    bus_secrets: SecureBus, nats_server: NatsServer, tmp_path: Path, report: Report
) -> None:
    async with processes(bus_secrets, nats_server.url, tmp_path / "logs", ENV) as system:
        doomed = await system.runtime()
        await system.runtime()
        web = await system.experience()
        await system.add_users(*USERS)

        async with Load(web.url, USERS) as load:
            await load.until(lambda: load.ok_since(0) >= 100, 60, "warmed up")
            await doomed.kill()
            killed_at = load.now()
            held = len(load.in_flight)
            await load.until(
                lambda: load.settled_before(killed_at) and load.ok_since(killed_at) >= 200,
                60,
                "settled after the kill",
            )
        lost = await lost_sessions(web.url, load.sessions)
        measured = report(
            "one of two workers SIGKILLed",
            load,
            killed_at,
            len(lost),
            f"{held} request(s) in flight at the kill",
        )

    assert [o.problem for o in load.outcomes if o.problem] == []
    assert lost == []
    failed = [o for o in load.outcomes if o.failed]
    # Only requests in flight at the kill failed (the dead worker held them), and no more than
    # were in flight; everything sent afterwards went to the surviving worker.
    assert all(o.started < killed_at for o in failed), failed
    assert measured.failed <= held
    assert all(o.ended - o.started <= REQUEST_TIMEOUT_S + 1 for o in failed)
    assert load.ok_since(killed_at, "login") > 0


async def test_without_workers_clear_503s_then_recovery_without_touching_the_gate(
    bus_secrets: SecureBus, nats_server: NatsServer, tmp_path: Path, report: Report
) -> None:
    async with processes(bus_secrets, nats_server.url, tmp_path / "logs", ENV) as system:
        workers = [await system.runtime(), await system.runtime()]
        web = await system.experience()
        await system.add_users(*USERS)
        alice = await web.login(USERS[0])
        token = alice["session_token"]

        async with web.socket(token) as open_socket, Load(web.url, USERS[1:]) as load:
            await load.until(lambda: load.ok_since(0) >= 50, 60, "warmed up")
            for worker in workers:
                await worker.kill()
            killed_at = load.now()

            async with web.http(token) as http:
                for call in (
                    lambda: http.get(f"/api/session/{alice['session_id']}"),
                    lambda: http.post("/api/auth/login", json={"username": "x", "password": "y"}),
                    lambda: http.get("/readyz"),
                ):
                    began = time.monotonic()
                    response = await call()
                    assert time.monotonic() - began < REQUEST_TIMEOUT_S  # within its deadline
                    assert response.status_code == 503, response.text
                    assert response.headers["Retry-After"] == "1"
                    assert response.json()["error"]["code"] == "runtime_unavailable"

            async with web.socket(token) as refused:
                assert await close_code(refused) == 4503
            # Work sent on a socket that was open before is queued, not lost.
            await open_socket.send(
                '{"type": "intent", "id": "queued", "intent": "echo", "payload": {"n": 1}}'
            )
            assert (await next_frame(open_socket))["type"] == "ack"

            restarted = await system.runtime()
            back_at = load.now()
            first = await web.login(USERS[0])  # at once: the gate needs no restart
            first_s = load.now() - back_at
            await load.until(
                lambda: load.settled_before(back_at) and load.ok_since(back_at, "login") >= 10,
                60,
                "recovered after the restart",
            )
            result = await next_frame(open_socket, timeout=30)
            assert (result["id"], result["type"]) == ("queued", "result")
        lost = await lost_sessions(web.url, load.sessions)
        measured = report(
            "all workers SIGKILLed, one restarted",
            load,
            killed_at,
            len(lost),
            f"runtime restart took {back_at - killed_at:.2f} s; a login right after it "
            f"answered in {first_s:.3f} s",
        )

        async with web.socket(first["session_token"]) as again:
            assert (await echo(again, "after"))["type"] == "result"
        assert web.component.running, "the gate was never restarted"
        assert restarted.running

    assert [o.problem for o in load.outcomes if o.problem] == []
    assert lost == []
    # Every failure was a clear 503 from the time without workers; after the restart, none.
    assert all(o.started < back_at for o in load.outcomes if o.failed)
    assert measured.failed > 0
