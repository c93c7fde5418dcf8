"""FastStream routers, one per intent family: each subscriber only hands the message on.

The hot intents (``FAST_LANE``) are served by ``runtime_worker.fastlane`` instead, on the same
connection. All subscribers join the ``runtime`` queue group, so any number of workers share
the load.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from faststream.message import StreamMessage
from faststream.nats import NatsRouter

from bus import names
from intents import (
    AuthenticateExternal,
    AuthenticateUser,
    CreateSession,
    CreateUser,
    GetSession,
    Intent,
    ListSessions,
    ListUsers,
    Ping,
    PingReply,
    RefreshSession,
    RemoveUser,
    Reply,
    RevokeSession,
    RevokeUserSessions,
    SetPassword,
    StoreHandover,
    TakeHandover,
    VerifySession,
)
from runtime_worker import identities, sessions, users
from runtime_worker.deps import Deps
from runtime_worker.dispatch import Dispatcher, Handler, I
from runtime_worker.fastlane import FastLane


async def _the_message(msg: StreamMessage[Any]) -> Any:
    """The decoder: hand the handler the message itself. FastStream's default decoder parses the
    JSON (the dispatcher parses it again, typed), and a handler parameter of type ``NatsMessage``
    is resolved as a context field, which FastDepends does in a thread: together about a quarter
    of a worker's time per ``VerifySession`` (bench/worker_throughput.py: 1,350 -> 1,760-1,900
    req/s)."""
    return msg


# On the path of every request: every Bearer call and socket admission verifies its session.
FAST_LANE: frozenset[type[Intent]] = frozenset({VerifySession, GetSession, ListSessions})


@dataclass(frozen=True)
class Lanes:
    """Where a family's intents are subscribed: FastStream's router, or the fast lane."""

    router: NatsRouter
    fast: FastLane
    dispatcher: Dispatcher


def bind(lanes: Lanes, intent_type: type[I], handler: Handler[I]) -> None:
    """Subscribe ``handler`` to the intent's subject in the runtime queue group.

    Up to ``dispatcher.concurrency`` intents of this type run at once on this worker: one slow
    intent (a password check, a KV call waiting out an election) does not hold up the others.
    """

    if intent_type in FAST_LANE:
        lanes.fast.bind(intent_type, handler)
        return
    dispatcher = lanes.dispatcher

    async def on_intent(msg: StreamMessage[Any]) -> bytes:
        return await dispatcher.handle(msg.body, msg.headers, intent_type, handler)

    on_intent.__name__ = f"on_{intent_type.__name__}"
    on_intent.__qualname__ = on_intent.__name__
    lanes.router.subscriber(
        intent_type.subject,
        queue=names.RUNTIME_QUEUE,
        max_workers=dispatcher.concurrency,
        decoder=_the_message,
    )(on_intent)


def session_router(deps: Deps, dispatcher: Dispatcher, fast: FastLane) -> NatsRouter:
    """Session intents."""
    router = NatsRouter()
    lanes = Lanes(router, fast, dispatcher)
    s, p = deps.sessions, deps.policy

    async def create(i: CreateSession, now: datetime) -> Reply:
        return await sessions.create_session(i, s, deps.idempotency, p, now)

    async def verify(i: VerifySession, now: datetime) -> Reply:
        return await sessions.verify_session(i, s, p, now)

    async def get(i: GetSession, now: datetime) -> Reply:
        return await sessions.get_session(i, s, now)

    async def list_(i: ListSessions, now: datetime) -> Reply:
        return await sessions.list_sessions(i, s, now)

    async def refresh(i: RefreshSession, now: datetime) -> Reply:
        return await sessions.refresh_session(i, s, p, now)

    async def revoke(i: RevokeSession, now: datetime) -> Reply:
        return await sessions.revoke_session(i, s, now)

    async def revoke_all(i: RevokeUserSessions, now: datetime) -> Reply:
        return await sessions.revoke_user_sessions(i, s, now)

    bind(lanes, CreateSession, create)
    bind(lanes, VerifySession, verify)
    bind(lanes, GetSession, get)
    bind(lanes, ListSessions, list_)
    bind(lanes, RefreshSession, refresh)
    bind(lanes, RevokeSession, revoke)
    bind(lanes, RevokeUserSessions, revoke_all)
    return router


def user_router(deps: Deps, dispatcher: Dispatcher, fast: FastLane) -> NatsRouter:
    """User intents."""
    router = NatsRouter()
    lanes = Lanes(router, fast, dispatcher)

    async def authenticate(i: AuthenticateUser, now: datetime) -> Reply:
        return await users.authenticate_user(i, deps.users, deps.passwords, deps.attempts, now)

    async def create(i: CreateUser, now: datetime) -> Reply:
        return await users.create_user(i, deps.users, deps.passwords, now)

    async def list_(i: ListUsers, now: datetime) -> Reply:
        return await users.list_users(i, deps.users)

    async def remove(i: RemoveUser, now: datetime) -> Reply:
        return await users.remove_user(i, deps.users, deps.sessions, now)

    async def passwd(i: SetPassword, now: datetime) -> Reply:
        return await users.set_password(i, deps.users, deps.passwords, deps.sessions, now)

    bind(lanes, AuthenticateUser, authenticate)
    bind(lanes, CreateUser, create)
    bind(lanes, ListUsers, list_)
    bind(lanes, RemoveUser, remove)
    bind(lanes, SetPassword, passwd)

    async def external(i: AuthenticateExternal, now: datetime) -> Reply:
        return await identities.authenticate_external(i, deps.users, deps.identities, now)

    async def store_handover(i: StoreHandover, now: datetime) -> Reply:
        return await identities.store_handover(i, deps.handovers, now)

    async def take_handover(i: TakeHandover, now: datetime) -> Reply:
        return await identities.take_handover(i, deps.handovers, now)

    bind(lanes, AuthenticateExternal, external)
    bind(lanes, StoreHandover, store_handover)
    bind(lanes, TakeHandover, take_handover)
    return router


def system_router(deps: Deps, dispatcher: Dispatcher, fast: FastLane) -> NatsRouter:
    """System intents."""
    router = NatsRouter()
    lanes = Lanes(router, fast, dispatcher)

    async def ping(i: Ping, now: datetime) -> PingReply:
        return PingReply(worker_id=deps.worker_id)

    bind(lanes, Ping, ping)
    return router
