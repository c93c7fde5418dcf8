"""NATS restarts under load (file storage): sessions survive, every process reconnects alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.backends import NatsServer
from tests.faults.conftest import Report
from tests.faults.load import Load, lost_sessions
from tests.processes import Experience, echo, processes
from tests.secure import SecureBus
from tests.stack import close_code

pytestmark = pytest.mark.timeout(180)

REQUEST_TIMEOUT_S = 5.0
ENV = {"SYMPHAINY_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S), "SYMPHAINY_RETRY_AFTER_S": "1"}
USERS = [f"user{i}" for i in range(5)]
RECONNECT_S = 2.0
# What a client may be told when its socket ends for a reason that is not its own: retry.
RETRYABLE_CLOSES = {1001, 1011, 1012, 1013, 4429, 4503}


def retryable_code(closed: ConnectionClosed) -> int:
    """The close code, which must tell the client to retry."""
    code = closed.rcvd.code if closed.rcvd is not None else None
    if code not in RETRYABLE_CLOSES:
        raise AssertionError(f"socket closed with {code}, which does not tell a client to retry")
    return code


async def admitted_echo(web: Experience, token: str, timeout: float = 30.0) -> None:
    """Reconnect as the web client does (backing off on retryable closes) until echo works."""
    delay = 0.1
    async with asyncio.timeout(timeout):
        while True:
            try:
                async with web.socket(token) as ws:
                    assert (await echo(ws, "again"))["type"] == "result"
                    return
            except ConnectionClosed as closed:
                retryable_code(closed)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_a_nats_restart_loses_no_session_and_needs_no_other_restart(
    bus_secrets: SecureBus, nats_server: NatsServer, tmp_path: Path, report: Report, how: str
) -> None:
    if not nats_server.controllable:
        pytest.skip("NATS_URL names a server the tests do not control")
    async with processes(bus_secrets, nats_server.url, tmp_path / "logs", ENV) as system:
        runtime = await system.runtime(workers=2)
        web = await system.experience()
        await system.add_users(*USERS)
        token = (await web.login(USERS[0]))["session_token"]

        async with web.socket(token) as ws, Load(web.url, USERS[1:]) as load:
            assert (await echo(ws, "before"))["type"] == "result"
            await load.until(lambda: load.ok_since(0) >= 100, 60, "warmed up")
            down_at = load.now()
            await asyncio.to_thread(getattr(nats_server, how))
            # Started from this thread: the embedded server dies with the thread that made it.
            nats_server.start()
            up_at = load.now()
            await load.until(
                lambda: load.settled_before(up_at) and load.ok_since(up_at, "login") >= 10,
                60,
                "recovered after the restart",
            )
            try:
                await echo(ws, "after")
                socket_fate = "the open socket survived"
            except ConnectionClosed as closed:
                socket_fate = f"the open socket was closed with {retryable_code(closed)}"
                await admitted_echo(web, token)
        # The gate watches the sessions bucket again: a revocation still closes a socket.
        bob = await web.login(USERS[1])
        async with web.socket(bob["session_token"]) as bobs:
            assert (await echo(bobs, "bob"))["type"] == "result"
            async with web.http(bob["session_token"]) as http:
                assert (await http.post("/api/auth/logout")).status_code == 204
            revoked_at = load.now()
            assert await close_code(bobs, timeout=10) == 4404
            revocation_s = load.now() - revoked_at

        lost = await lost_sessions(web.url, load.sessions)
        first_ok = min(o.ended for o in load.outcomes if o.ok and o.started >= down_at)
        measured = report(
            f"NATS restarted ({how})",
            load,
            down_at,
            len(lost),
            f"NATS was down {up_at - down_at:.2f} s; first success +{first_ok - down_at:.2f} s; "
            f"{socket_fate}; a revocation +{revoked_at - down_at:.1f} s closed its socket in "
            f"{revocation_s:.2f} s",
        )
        async with web.http() as http:
            assert (await http.get("/readyz")).status_code == 200
        assert web.component.running
        assert runtime.running

    assert [o.problem for o in load.outcomes if o.problem] == []
    assert lost == []
    # Errors only while NATS was away, and while clients reconnected (nats-py waits 0.5 s).
    assert all(o.started < up_at + RECONNECT_S for o in load.outcomes if o.failed)
    assert measured.sessions > 0
