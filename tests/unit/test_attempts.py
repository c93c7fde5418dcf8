"""Login attempts: a hard limit per (username, address), only a slowdown per username."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from intents import RateLimited
from runtime_worker.attempts import (
    FIRST_DELAY,
    LoginAttempts,
    Slowdown,
    attempts_key,
    pair_key,
)
from runtime_worker.kv import MemoryBucket

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = timedelta(seconds=60)
SLOWDOWN = Slowdown(after=2, max_delay=timedelta(seconds=1))


async def test_the_limit_per_name_and_address_holds_until_the_window_ends() -> None:
    attempts = LoginAttempts(MemoryBucket(), limit=3, window=WINDOW)
    for _ in range(3):
        await attempts.begin("alice", "10.0.0.1", T0)
    with pytest.raises(RateLimited) as caught:
        await attempts.begin("alice", "10.0.0.1", T0 + timedelta(seconds=15))
    assert caught.value.retry_after == 45
    with pytest.raises(RateLimited) as caught:
        await attempts.begin("ALICE", "10.0.0.1", T0 + timedelta(seconds=59.5))
    assert caught.value.retry_after == 1
    await attempts.begin("alice", "10.0.0.1", T0 + WINDOW)  # a new window


async def test_one_address_using_up_a_name_leaves_it_to_every_other_address() -> None:
    attempts = LoginAttempts(MemoryBucket(), limit=1, window=WINDOW)
    await attempts.begin("Alice", "10.0.0.1", T0)
    with pytest.raises(RateLimited):
        await attempts.begin("alice", "10.0.0.1", T0)
    await attempts.begin("alice", "10.0.0.2", T0)
    await attempts.begin("bob", "10.0.0.1", T0)


async def test_a_success_clears_its_own_address_only() -> None:
    attempts = LoginAttempts(MemoryBucket(), limit=2, window=WINDOW)
    for address in ("10.0.0.1", "10.0.0.2"):
        await attempts.begin("alice", address, T0)
        await attempts.begin("alice", address, T0)
    await attempts.succeeded("alice", "10.0.0.1")
    await attempts.begin("alice", "10.0.0.1", T0)
    with pytest.raises(RateLimited):
        await attempts.begin("alice", "10.0.0.2", T0)
    await attempts.succeeded("nobody", "10.0.0.1")  # nothing to clear is fine


async def test_workers_sharing_the_bucket_share_the_limit() -> None:
    shared = MemoryBucket()
    first = LoginAttempts(shared, limit=2, window=WINDOW)
    second = LoginAttempts(shared, limit=2, window=WINDOW)
    await first.begin("alice", "10.0.0.1", T0)
    await second.begin("alice", "10.0.0.1", T0)
    with pytest.raises(RateLimited):
        await first.begin("alice", "10.0.0.1", T0)


async def test_failures_on_a_name_from_any_address_slow_every_address_never_block() -> None:
    shared = MemoryBucket()
    first = LoginAttempts(shared, limit=100, window=WINDOW, slowdown=SLOWDOWN)
    second = LoginAttempts(shared, limit=100, window=WINDOW, slowdown=SLOWDOWN)
    delays = []
    for i in range(8):
        delays.append(await second.begin("alice", "10.0.0.1", T0))
        await first.failed("ALICE", T0)  # from a stranger's addresses, through another worker
        assert await first.begin("bob", f"10.0.1.{i}", T0) == timedelta(0)
    assert delays == [
        timedelta(0),
        timedelta(0),
        FIRST_DELAY,
        FIRST_DELAY * 2,
        FIRST_DELAY * 4,
        FIRST_DELAY * 8,
        timedelta(seconds=1),
        timedelta(seconds=1),
    ]
    # A success does not clear it (the stranger would just go on), the window's end does.
    await second.succeeded("alice", "10.0.0.1")
    assert await second.begin("alice", "10.0.0.9", T0) == timedelta(seconds=1)
    assert await second.begin("alice", "10.0.0.9", T0 + WINDOW) == timedelta(0)


def test_the_slowdown_is_capped_and_can_be_off() -> None:
    assert SLOWDOWN.delay(10**6) == timedelta(seconds=1)
    assert Slowdown(after=0, max_delay=timedelta(0)).delay(50) == timedelta(0)
    assert Slowdown(after=0, max_delay=timedelta(seconds=1)).delay(0) == FIRST_DELAY


async def test_keys_are_hashes_that_any_name_and_address_can_have() -> None:
    assert attempts_key("Alice") == attempts_key("alice")
    assert pair_key("Alice", "::1") == pair_key("alice", "::1")
    assert pair_key("alice", "::1") != pair_key("alice", "::2") != attempts_key("alice")
    for name in ("a..b", "a.", "*", ">", "ü", ""):
        for key in (attempts_key(name), pair_key(name, name), pair_key("a", f"{name}\0b")):
            assert len(key) == 64
            assert all(c in "0123456789abcdef" for c in key)
