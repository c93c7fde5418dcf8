"""The attack that logged anyone in as ``admin``: a rogue responder on the credentials subject.
With the Experience Plane's own (stolen) identity it is refused by nats-server, and the login
is answered by the runtime alone."""

from __future__ import annotations

import json

import httpx
import pytest
from nats.aio.msg import Msg

from bus import names
from bus.connection import BusGuard, connect
from bus.permissions import Role
from tests.backends import NatsServer
from tests.secure import SecureBus
from tests.stack import Stack

pytestmark = pytest.mark.usefixtures("expect_violations")


@pytest.mark.parametrize("role", [Role.EXPERIENCE, Role.ADMIN, Role.INSPECTOR])
async def test_a_rogue_credentials_responder_cannot_log_anyone_in(
    stack: Stack, nats_server: NatsServer, bus_secrets: SecureBus, role: Role
) -> None:
    identity = bus_secrets.role(role, nats_server.url)
    guard = BusGuard(identity)
    rogue = await connect(identity, "rogue", guard)
    answered: list[str] = []

    async def yes(msg: Msg) -> None:
        answered.append(msg.subject)
        await msg.respond(json.dumps({"ok": True, "user": {"id": "f" * 32}}).encode())

    try:
        for queue in ("", names.RUNTIME_QUEUE):
            await rogue.subscribe(names.USER_AUTHENTICATE, queue=queue, cb=yes)
        await rogue.flush()
        assert "permissions violation" in (await guard.refusal(timeout=2) or "")
        async with httpx.AsyncClient(base_url=stack.base_url) as http:
            for _ in range(5):
                login = await http.post(
                    "/api/auth/login", json={"username": "alice", "password": "wrong password"}
                )
                assert login.status_code == 401, login.text
                assert login.json()["error"]["code"] == "invalid_credentials"
        assert answered == []
    finally:
        await rogue.close()
