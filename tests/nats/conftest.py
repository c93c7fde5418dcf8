"""Fixtures for the NATS tier: runtime workers on the real server, a controllable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest

from bus.settings import Settings
from intents import utcnow
from runtime_worker.app import Worker, start_worker
from runtime_worker.passwords import Passwords

StartWorker = Callable[..., Awaitable[Worker]]


class FakeClock:
    """A clock the test moves forward by hand; starts at the real time."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def start(
    settings: Settings, clock: FakeClock, cheap_passwords: Passwords
) -> AsyncIterator[StartWorker]:
    """Start runtime workers (stopped at teardown); keyword arguments go to ``start_worker``."""
    started: list[Worker] = []

    async def _start(**kwargs: object) -> Worker:
        chosen = kwargs.pop("settings", settings)
        options: dict[str, object] = {"clock": clock, "passwords": cheap_passwords}
        options.update(kwargs)
        worker = await start_worker(chosen, **options)  # type: ignore[arg-type]
        started.append(worker)
        return worker

    yield _start
    for worker in started:
        await worker.stop()


@pytest.fixture
async def worker(start: StartWorker) -> Worker:
    return await start()
