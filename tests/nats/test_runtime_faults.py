"""Failures answer with typed errors, promptly: no worker, crashing handlers, bad input."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.aio.client import Client

from bus import names
from bus.settings import Settings
from bus.state import ensure_state_surface
from intents import (
    AuthenticateUser,
    AuthenticateUserReply,
    AuthenticationFailed,
    CreateUser,
    ErrorReply,
    Ping,
    PingReply,
    RuntimeUnavailable,
    SymphainyError,
    VerifySession,
)
from intents.request import ask
from runtime_worker.app import Worker
from runtime_worker.passwords import Passwords
from tests.nats.conftest import StartWorker


async def test_no_worker_is_runtime_unavailable_at_once(nc: Client) -> None:
    began = time.perf_counter()
    with pytest.raises(RuntimeUnavailable):
        await ask(nc, Ping(), 5.0)
    assert time.perf_counter() - began < 0.5  # "no responders", not a 5 s timeout


async def test_no_worker_with_state_surface_in_place_is_still_prompt(
    nc: Client, settings: Settings, start: StartWorker
) -> None:
    worker = await start()
    await worker.stop()
    await ensure_state_surface(nc.jetstream(), settings)
    began = time.perf_counter()
    with pytest.raises(RuntimeUnavailable):
        await ask(nc, VerifySession(session_id="a" * 32, user_id="b" * 32), 5.0)
    assert time.perf_counter() - began < 0.5


async def test_a_handler_that_raises_answers_with_an_error(nc: Client, start: StartWorker) -> None:
    class BrokenPasswords(Passwords):
        async def hash(self, password: str) -> str:
            raise RuntimeError("disk on fire")

    await start(passwords=BrokenPasswords())
    began = time.perf_counter()
    with pytest.raises(SymphainyError) as caught:
        await ask(nc, CreateUser(username="erin", password="pw"), 5.0)  # type: ignore[arg-type]
    assert type(caught.value) is SymphainyError
    assert caught.value.code == "internal"
    assert "disk on fire" not in caught.value.message
    assert time.perf_counter() - began < 1.0  # a reply, not a timeout


@pytest.mark.parametrize("payload", [b"", b"{", b"[1]", b'{"session_id": "x"}'])
async def test_malformed_intents_get_a_typed_error_reply(
    nc: Client, worker: Worker, payload: bytes
) -> None:
    msg = await nc.request(names.SESSION_VERIFY, payload, timeout=2)
    reply = ErrorReply.model_validate_json(msg.data)
    assert reply.error.code == "invalid_intent"


async def test_workers_share_the_load_as_a_queue_group(nc: Client, start: StartWorker) -> None:
    first, second = await start(), await start()
    replies = await asyncio.gather(*(ask(nc, Ping(), 2.0) for _ in range(200)))
    answered_by = {r.worker_id for r in replies if isinstance(r, PingReply)}
    assert answered_by == {first.worker_id, second.worker_id}
    # One stops: the other answers everything, nothing is lost.
    await first.stop()
    replies = await asyncio.gather(*(ask(nc, Ping(), 2.0) for _ in range(50)))
    assert {r.worker_id for r in replies if isinstance(r, PingReply)} == {second.worker_id}


class HeldPasswords(Passwords):
    """Cheap hashing, except that checking the password "hold" waits until released."""

    def __init__(self, cheap: Passwords) -> None:
        super().__init__(cheap._hasher)
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def verify(self, password: str, password_hash: str) -> bool:
        if password == "hold":
            self.holding.set()
            await self.release.wait()
        return await super().verify(password, password_hash)


@pytest.mark.parametrize("concurrency", [1, 8])
async def test_a_slow_intent_does_not_hold_up_others_of_its_kind(
    nc: Client,
    settings: Settings,
    start: StartWorker,
    cheap_passwords: Passwords,
    concurrency: int,
) -> None:
    passwords = HeldPasswords(cheap_passwords)
    await start(
        settings=settings.model_copy(update={"runtime_concurrency": concurrency}),
        passwords=passwords,
    )
    await ask(nc, CreateUser(username="alice", password="pw"), 2.0)  # type: ignore[arg-type]
    slow = asyncio.create_task(
        ask(nc, AuthenticateUser(username="alice", password="hold"), 5.0)  # type: ignore[arg-type]
    )
    await passwords.holding.wait()
    try:
        fast = ask(nc, AuthenticateUser(username="alice", password="pw"), 1.0)  # type: ignore[arg-type]
        if concurrency == 1:
            # One at a time (FastStream's default): the second waits behind the first.
            with pytest.raises(RuntimeUnavailable):
                await fast
        else:
            assert isinstance(await fast, AuthenticateUserReply)
    finally:
        passwords.release.set()
    with pytest.raises(AuthenticationFailed):
        await slow
