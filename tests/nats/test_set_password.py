"""``SetPassword``: sent as the admin role, it replaces the hash and revokes every session."""

from __future__ import annotations

import json

import pytest
from nats.aio.client import Client

from bus import names
from bus.connection import connect
from bus.permissions import Role
from intents import (
    AuthenticateUser,
    AuthenticationFailed,
    CreateSession,
    CreateSessionReply,
    CreateUser,
    CreateUserReply,
    SessionRevoked,
    SetPassword,
    SetPasswordReply,
    UserNotFound,
    VerifySession,
)
from intents.request import ask
from runtime_worker.app import Worker
from tests.backends import NatsServer
from tests.secure import SecureBus

T = 2.0
OLD, NEW = "the old password, long enough", "the new password, longer still"


async def test_set_password_as_admin_replaces_it_and_revokes_every_session(
    nc: Client, worker: Worker, bus_secrets: SecureBus, nats_server: NatsServer
) -> None:
    created = await ask(nc, CreateUser(username="dave", password=OLD), T)  # type: ignore[arg-type]
    assert isinstance(created, CreateUserReply)
    user = created.user
    sessions = []
    for _ in range(2):
        made = await ask(nc, CreateSession(user_id=user.id, username="dave"), T)
        assert isinstance(made, CreateSessionReply)
        sessions.append(made.session.session_id)

    admin = await connect(bus_secrets.role(Role.ADMIN, nats_server.url), "tests-admin")
    try:
        reply = await ask(admin, SetPassword(username="Dave", password=NEW), T)  # type: ignore[arg-type]
        with pytest.raises(UserNotFound):
            await ask(admin, SetPassword(username="nobody", password=NEW), T)  # type: ignore[arg-type]
    finally:
        await admin.close()
    assert isinstance(reply, SetPasswordReply)
    assert reply.user == user
    assert sorted(reply.revoked_sessions) == sorted(sessions)

    with pytest.raises(AuthenticationFailed):
        await ask(nc, AuthenticateUser(username="dave", password=OLD), T)  # type: ignore[arg-type]
    await ask(nc, AuthenticateUser(username="dave", password=NEW), T)  # type: ignore[arg-type]
    for session_id in sessions:
        with pytest.raises(SessionRevoked):
            await ask(nc, VerifySession(session_id=session_id, user_id=user.id), T)

    kv = await nc.jetstream().key_value(names.USERS_BUCKET)
    stored = json.loads((await kv.get("dave")).value)
    assert NEW not in json.dumps(stored)
