"""The bus as an attacker on the same host finds it: every attack a plain nats-py client could
make before authorization existed, now refused by nats-server itself.

Each attacker connects with a real identity (another role's, stolen) or none at all. A refusal
is what nats-server reports (``-ERR 'Permissions Violation ...'``), and the state the attack
aimed at is checked afterwards through the runtime.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from bus import names
from bus.connection import BusGuard, PermissionDenied, connect
from bus.identity import NatsIdentity
from bus.permissions import Role
from intents import (
    CreateSession,
    CreateSessionReply,
    CreateUser,
    CreateUserReply,
    RevokeSession,
    SessionInactive,
    SessionNotFound,
    UserInfo,
    VerifySession,
)
from intents.request import ask
from runtime_worker.app import Worker
from tests.backends import NatsServer
from tests.secure import SecureBus

pytestmark = pytest.mark.usefixtures("expect_violations")

T = 2.0
NOT_RUNTIME = [Role.EXPERIENCE, Role.ADMIN, Role.INSPECTOR]

Attacker = Callable[[Role], Awaitable[tuple[Client, BusGuard]]]


@pytest.fixture
async def attacker(nats_server: NatsServer, bus_secrets: SecureBus) -> AsyncIterator[Attacker]:
    """Connect as a role (credentials as stolen from its context); closed at teardown."""
    opened: list[Client] = []

    async def _as(role: Role) -> tuple[Client, BusGuard]:
        identity = bus_secrets.role(role, nats_server.url)
        guard = BusGuard(identity)
        nc = await connect(identity, f"attacker-{role.value}", guard)
        opened.append(nc)
        return nc, guard

    yield _as
    for nc in opened:
        await nc.close()


async def refusal(nc: Client, guard: BusGuard) -> str:
    """What nats-server refused on this connection (fails if it refused nothing)."""
    await nc.flush()
    # The server may report a refused subscription after the flush's PONG: wait for it.
    refused = await guard.refusal(timeout=T)
    assert refused is not None, "nats-server allowed it"
    return refused


async def allowed(nc: Client, guard: BusGuard, server: NatsServer) -> None:
    """Fails if nats-server refused anything to anyone so far."""
    await nc.flush()
    await nc.flush()
    assert guard.refused is None, guard.refused
    assert server.violations() == []


async def user_and_session(nc: Client) -> tuple[UserInfo, str]:
    made = await ask(nc, CreateUser(username="admin", password="pw"), T)  # type: ignore[arg-type]
    assert isinstance(made, CreateUserReply)
    created = await ask(nc, CreateSession(user_id=made.user.id, username="admin"), T)
    assert isinstance(created, CreateSessionReply)
    return made.user, created.session.session_id


async def test_anonymous_connections_are_refused(nats_server: NatsServer) -> None:
    with pytest.raises(PermissionDenied, match="refused the credentials of 'anonymous'"):
        await connect(NatsIdentity(nats_server.url), "anonymous")


async def test_a_wrong_password_is_refused(nats_server: NatsServer, bus_secrets: SecureBus) -> None:
    guessed = replace(bus_secrets.role(Role.RUNTIME, nats_server.url), password="guess")
    with pytest.raises(PermissionDenied, match="refused the credentials of 'runtime'"):
        await connect(guessed, "guesser")


@pytest.mark.parametrize("role", NOT_RUNTIME)
@pytest.mark.parametrize("subject", [names.USER_AUTHENTICATE, "credentials.>", ">"])
async def test_no_one_but_the_runtime_can_answer_or_read_credentials(
    attacker: Attacker, role: Role, subject: str
) -> None:
    nc, guard = await attacker(role)
    await nc.subscribe(subject, queue=names.RUNTIME_QUEUE)
    assert "subscription" in (await refusal(nc, guard)).lower()
    nc, guard = await attacker(role)
    await nc.subscribe(subject)
    assert "subscription" in (await refusal(nc, guard)).lower()


@pytest.mark.parametrize("role", [Role.EXPERIENCE, Role.ADMIN])
async def test_only_the_runtime_and_inspector_see_intents(attacker: Attacker, role: Role) -> None:
    nc, guard = await attacker(role)
    await nc.subscribe(names.INTENTS_ALL)
    assert "subscription" in (await refusal(nc, guard)).lower()


@pytest.mark.parametrize("role", NOT_RUNTIME)
async def test_password_hashes_are_unreadable(
    attacker: Attacker, nc: Client, worker: Worker, role: Role
) -> None:
    await user_and_session(nc)
    spy, guard = await attacker(role)
    direct = f"{names.JS_API}.DIRECT.GET.{names.kv_stream(names.USERS_BUCKET)}"
    with pytest.raises(PermissionDenied, match=r"(?i)direct\.get\.kv_users\.\$kv\.users\.admin"):
        await guard.run(spy.request(f"{direct}.$KV.users.admin", b"", timeout=T))
    spy, guard = await attacker(role)
    with pytest.raises(PermissionDenied):
        await guard.run(spy.jetstream().key_value(names.USERS_BUCKET))


@pytest.mark.parametrize("role", NOT_RUNTIME)
async def test_sessions_cannot_be_written_unrevoked_or_planted(
    attacker: Attacker, nc: Client, worker: Worker, role: Role
) -> None:
    user, session_id = await user_and_session(nc)
    await ask(nc, RevokeSession(session_id=session_id), T)
    stored = await (await nc.jetstream().key_value(names.SESSIONS_BUCKET)).get(session_id)
    assert stored.value is not None
    unrevoked = stored.value.replace(b'"state":"revoked"', b'"state":"active"')
    planted_id = "a" * 32
    planted = unrevoked.replace(session_id.encode(), planted_id.encode())
    for key, value in ((session_id, unrevoked), (planted_id, planted)):
        forger, guard = await attacker(role)
        await forger.publish(names.kv_key_subject(names.SESSIONS_BUCKET, key), value)
        assert "publish" in (await refusal(forger, guard)).lower()
    forger, guard = await attacker(role)
    await forger.publish(
        names.kv_key_subject(names.SESSIONS_BUCKET, session_id),
        b"",
        headers={"KV-Operation": "DEL"},
    )
    assert "publish" in (await refusal(forger, guard)).lower()
    with pytest.raises(SessionInactive):
        await ask(nc, VerifySession(session_id=session_id, user_id=user.id), T)
    with pytest.raises(SessionNotFound):
        await ask(nc, VerifySession(session_id=planted_id, user_id=user.id), T)


@pytest.mark.parametrize(
    ("role", "intent"),
    [
        (Role.INSPECTOR, RevokeSession(session_id="a" * 32)),
        (Role.INSPECTOR, CreateSession(user_id="f" * 32, username="admin")),
        (Role.INSPECTOR, CreateUser(username="mallory", password="pw", actor="cli")),  # type: ignore[arg-type]
        (Role.EXPERIENCE, CreateUser(username="mallory", password="pw", actor="cli")),  # type: ignore[arg-type]
        (Role.ADMIN, CreateSession(user_id="f" * 32, username="admin")),
    ],
    ids=lambda v: v.value if isinstance(v, Role) else type(v).__name__,
)
async def test_roles_send_only_their_own_intents(
    attacker: Attacker, nc: Client, worker: Worker, role: Role, intent: object
) -> None:
    sender, guard = await attacker(role)
    with pytest.raises(PermissionDenied, match=r"(?i)publish"):
        await guard.run(ask(sender, intent, T))  # type: ignore[arg-type]


@pytest.mark.parametrize("role", NOT_RUNTIME)
@pytest.mark.parametrize(
    "subject",
    [names.agent_reply_subject("gate", "socket"), names.audit_subject(names.SESSION_CREATE)],
)
async def test_agent_replies_and_audit_records_cannot_be_forged(
    attacker: Attacker, role: Role, subject: str
) -> None:
    forger, guard = await attacker(role)
    frame = {"type": "result", "intent_id": "x", "client_id": "1", "data": {"owned": True}}
    await forger.publish(subject, json.dumps(frame).encode())
    assert "publish" in (await refusal(forger, guard)).lower()


@pytest.mark.parametrize("role", NOT_RUNTIME)
async def test_no_stream_or_bucket_can_be_changed_or_deleted(
    attacker: Attacker, role: Role
) -> None:
    for verb in ("DELETE", "PURGE", "UPDATE"):
        admin, guard = await attacker(role)
        await admin.publish(f"{names.JS_API}.STREAM.{verb}.{names.INTENTS_STREAM}", b"{}")
        assert "publish" in (await refusal(admin, guard)).lower()


async def test_the_inspector_can_take_the_whole_nats_cli_tour(
    attacker: Attacker, nc: Client, worker: Worker, nats_server: NatsServer
) -> None:
    _, session_id = await user_and_session(nc)
    inspector, guard = await attacker(Role.INSPECTOR)
    seen: list[Msg] = []

    async def collect(msg: Msg) -> None:
        seen.append(msg)

    # nats sub 'intents.>' / 'audit.>'
    await inspector.subscribe(names.INTENTS_ALL, cb=collect)
    await inspector.subscribe(names.AUDIT_ALL, cb=collect)
    await allowed(inspector, guard, nats_server)
    # nats req intents.system.ping '{}'
    pong = await inspector.request(names.SYSTEM_PING, b"{}", timeout=T)
    assert json.loads(pong.data)["ok"] is True
    js = inspector.jetstream()
    # nats stream view INTENTS: an ephemeral consumer, messages read, the consumer removed
    view = await js.subscribe(names.AUDIT_ALL, stream=names.INTENTS_STREAM, ordered_consumer=True)
    record = await view.next_msg(timeout=T)
    assert record.subject.startswith(names.AUDIT_PREFIX)
    await view.unsubscribe()
    pull = await js.pull_subscribe(names.AUDIT_ALL, stream=names.INTENTS_STREAM)
    assert await pull.fetch(1, timeout=T)
    await pull.unsubscribe()
    # nats kv ls sessions / kv get sessions <id> / kv ls sessions_by_user
    sessions = await js.key_value(names.SESSIONS_BUCKET)
    assert session_id in await sessions.keys()
    entry = await sessions.get(session_id)
    assert entry.value is not None
    assert session_id.encode() in entry.value
    assert await (await js.key_value(names.SESSIONS_BY_USER_BUCKET)).keys()
    # nats stream info AGENT_WORK / consumer info AGENT_WORK agent-runners
    assert (await js.stream_info(names.AGENT_WORK_STREAM)).config.name == names.AGENT_WORK_STREAM
    info = await js.consumer_info(names.AGENT_WORK_STREAM, names.AGENT_CONSUMER)
    assert info.name == names.AGENT_CONSUMER
    # nats micro ls: a $SRV.PING request is allowed (nobody answers it yet)
    with contextlib.suppress(NatsTimeout, NoRespondersError):
        await inspector.request("$SRV.PING", b"", timeout=0.2)
    await allowed(inspector, guard, nats_server)
    # And it saw the intents of the tour's own ping go by.
    assert any(m.subject == names.SYSTEM_PING for m in seen)


async def test_the_inspector_cannot_take_agent_work(attacker: Attacker, worker: Worker) -> None:
    inspector, guard = await attacker(Role.INSPECTOR)
    # A consumer on the work queue would take the work it reads off the queue.
    with pytest.raises(PermissionDenied, match=r"(?i)consumer\.create\.agent_work"):
        await guard.run(inspector.jetstream().pull_subscribe(names.AGENT_ALL, stream="AGENT_WORK"))
