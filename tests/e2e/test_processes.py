"""The system as a deployment runs it: ``symphainy runtime`` and ``symphainy experience`` as
separate OS processes on the NATS of the fixture, driven over HTTP and WebSocket like a user."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.backends import NatsServer
from tests.processes import echo, processes
from tests.secure import SecureBus
from tests.stack import close_code

pytestmark = pytest.mark.timeout(90)


async def test_a_user_logs_in_works_on_a_socket_and_logs_out(
    bus_secrets: SecureBus, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with processes(bus_secrets, nats_server.url, tmp_path / "logs") as system:
        runtime = await system.runtime(workers=2)
        web = await system.experience()
        await system.add_users("alice")

        async with web.http() as http:
            assert (await http.get("/readyz")).status_code == 200
        login = await web.login("alice")
        token, session_id = login["session_token"], login["session_id"]
        async with web.http(token) as http:
            mine = await http.get(f"/api/session/{session_id}")
            assert mine.status_code == 200
            assert mine.json()["state"] == "active"
            listed = await http.get("/api/sessions")
            assert [s["session_id"] for s in listed.json()] == [session_id]
            second = await http.post("/api/session/create")
            assert second.status_code == 201

        async with web.socket(token) as ws:
            assert ws.subprotocol == "symphainy.v1"
            result = await echo(ws, "1")
            assert result["type"] == "result"
            async with web.http(token) as http:
                assert (await http.post("/api/auth/logout")).status_code == 204
            assert await close_code(ws) == 4404
        async with web.http(token) as http:
            after = await http.get(f"/api/session/{session_id}")
        assert after.status_code == 401
        assert after.json()["error"]["code"] == "session_revoked"

        # Stopped as an operator would: open sockets are told the server is going away.
        other = (await web.login("alice"))["session_token"]
        async with web.socket(other) as ws:
            assert (await echo(ws, "2"))["type"] == "result"
            assert await web.component.terminate() == 0
            assert await close_code(ws) == 1001
        assert await runtime.terminate() == 0


async def test_an_experience_started_before_any_runtime_waits_for_one(
    bus_secrets: SecureBus, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with processes(bus_secrets, nats_server.url, tmp_path / "logs") as system:
        web = await system.experience()
        async with web.http() as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert "Retry-After" in ready.headers
            refused = await http.post(
                "/api/auth/login", json={"username": "alice", "password": "whatever it is"}
            )
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "runtime_unavailable"

        await system.runtime()
        await system.add_users("alice")
        token = (await web.login("alice"))["session_token"]
        # The gate found the sessions bucket the runtime created: revocation reaches the socket.
        async with web.socket(token) as ws:
            assert (await echo(ws, "1"))["type"] == "result"
            async with web.http(token) as http:
                assert (await http.post("/api/auth/logout")).status_code == 204
            assert await close_code(ws, timeout=10) == 4404


async def test_two_experience_processes_share_sessions_and_revocations(
    bus_secrets: SecureBus, nats_server: NatsServer, tmp_path: Path
) -> None:
    keys = {"k1": secrets.token_urlsafe(48)}
    env = {"SYMPHAINY_JWT_KEYS": json.dumps(keys), "SYMPHAINY_JWT_ACTIVE_KID": "k1"}
    async with processes(bus_secrets, nats_server.url, tmp_path / "logs", env) as system:
        await system.runtime()
        first, second = await system.experience(), await system.experience()
        await system.add_users("bob")
        login = await first.login("bob")
        token, session_id = login["session_token"], login["session_id"]
        async with second.http(token) as http:
            assert (await http.get(f"/api/session/{session_id}")).status_code == 200
        async with first.socket(token) as ws:
            async with second.http(token) as http:
                assert (await http.delete(f"/api/session/{session_id}")).status_code == 204
            assert await close_code(ws) == 4404
        with pytest.raises(ConnectionClosed) as refused:
            async with second.socket(token) as ws:
                await ws.recv()
        assert refused.value.rcvd is not None
        assert refused.value.rcvd.code == 4404
