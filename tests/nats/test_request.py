"""The request helper when a worker takes an intent and never answers (it died holding it).

A "swallower" joins the runtime's queue group on one subject and answers nothing, as a worker
killed mid-request would. A retry-safe intent is asked again at half its deadline and answered by
a live worker; any other intent is never sent twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bus import names
from intents import (
    CreateSession,
    CreateSessionReply,
    CreateUser,
    CreateUserReply,
    RuntimeUnavailable,
    VerifySession,
    VerifySessionReply,
)
from intents.request import SECOND_TRY_AT, ask
from tests.nats.conftest import StartWorker

TIMEOUT_S = 2.0


class Swallower:
    """Takes messages on a subject in the runtime's queue group and never replies."""

    def __init__(self) -> None:
        self.taken: list[Msg] = []
        self.first = asyncio.Event()
        self.sub: Subscription | None = None

    async def join(self, nc: Client, subject: str) -> None:
        async def take(msg: Msg) -> None:
            self.taken.append(msg)
            self.first.set()

        self.sub = await nc.subscribe(subject, queue=names.RUNTIME_QUEUE, cb=take)
        await nc.flush()

    async def leave(self) -> None:
        if self.sub is not None:
            await self.sub.unsubscribe()
            self.sub = None


@pytest.fixture
async def swallower(nc: Client) -> AsyncIterator[Swallower]:
    made = Swallower()
    yield made
    await made.leave()


async def a_session(nc: Client, start: StartWorker) -> tuple[str, str]:
    """(user id, session id) made by a worker that is stopped again."""
    worker = await start()
    user = await ask(nc, CreateUser(username="alice", password="pw"), TIMEOUT_S)  # type: ignore[arg-type]
    assert isinstance(user, CreateUserReply)
    created = await ask(nc, CreateSession(user_id=user.user.id, username="alice"), TIMEOUT_S)
    assert isinstance(created, CreateSessionReply)
    await worker.stop()
    return user.user.id, created.session.session_id


async def test_a_read_held_by_a_dead_worker_is_answered_by_a_live_one(
    nc: Client, start: StartWorker, swallower: Swallower
) -> None:
    user_id, session_id = await a_session(nc, start)
    await swallower.join(nc, names.SESSION_VERIFY)
    began = time.perf_counter()
    verifying = asyncio.create_task(
        ask(nc, VerifySession(session_id=session_id, user_id=user_id), TIMEOUT_S)
    )
    await swallower.first.wait()
    # The worker that took it is gone; another one starts before the second try.
    await swallower.leave()
    await start()
    reply = await verifying
    assert isinstance(reply, VerifySessionReply)
    assert reply.session_id == session_id
    assert TIMEOUT_S * SECOND_TRY_AT <= time.perf_counter() - began < TIMEOUT_S
    assert len(swallower.taken) == 1


async def test_a_read_nobody_answers_is_sent_twice_and_fails_within_its_deadline(
    nc: Client, swallower: Swallower
) -> None:
    await swallower.join(nc, names.SESSION_VERIFY)
    began = time.perf_counter()
    with pytest.raises(RuntimeUnavailable):
        await ask(nc, VerifySession(session_id="a" * 32, user_id="b" * 32), TIMEOUT_S)
    assert time.perf_counter() - began < TIMEOUT_S + 0.5
    assert len(swallower.taken) == 2
    ids = {msg.headers[names.INTENT_ID_HEADER] for msg in swallower.taken if msg.headers}
    assert len(ids) == 1  # the same intent, asked again


async def test_an_intent_that_is_not_retry_safe_is_sent_once(
    nc: Client, swallower: Swallower
) -> None:
    await swallower.join(nc, names.SESSION_CREATE)
    with pytest.raises(RuntimeUnavailable):
        await ask(nc, CreateSession(user_id="b" * 32, username="alice"), TIMEOUT_S)
    assert len(swallower.taken) == 1
