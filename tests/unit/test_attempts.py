"""Login attempts per username: counted before the password check, shared, cleared by success."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from intents import RateLimited
from runtime_worker.attempts import LoginAttempts, attempts_key
from runtime_worker.kv import MemoryBucket

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = timedelta(seconds=60)


async def test_the_limit_holds_until_the_window_ends() -> None:
    attempts = LoginAttempts(MemoryBucket(), limit=3, window=WINDOW)
    for _ in range(3):
        await attempts.count("alice", T0)
    with pytest.raises(RateLimited) as caught:
        await attempts.count("alice", T0 + timedelta(seconds=15))
    assert caught.value.retry_after == 45
    with pytest.raises(RateLimited) as caught:
        await attempts.count("ALICE", T0 + timedelta(seconds=59.5))
    assert caught.value.retry_after == 1
    await attempts.count("alice", T0 + WINDOW)  # a new window


async def test_names_count_separately_and_ignore_case() -> None:
    attempts = LoginAttempts(MemoryBucket(), limit=1, window=WINDOW)
    await attempts.count("Alice", T0)
    with pytest.raises(RateLimited):
        await attempts.count("alice", T0)
    await attempts.count("bob", T0)


async def test_a_success_clears_the_count() -> None:
    attempts = LoginAttempts(MemoryBucket(), limit=2, window=WINDOW)
    await attempts.count("alice", T0)
    await attempts.count("alice", T0)
    await attempts.clear("alice")
    await attempts.count("alice", T0)
    await attempts.clear("nobody")  # nothing to clear is fine


async def test_workers_sharing_the_bucket_share_the_limit() -> None:
    shared = MemoryBucket()
    first = LoginAttempts(shared, limit=2, window=WINDOW)
    second = LoginAttempts(shared, limit=2, window=WINDOW)
    await first.count("alice", T0)
    await second.count("alice", T0)
    with pytest.raises(RateLimited):
        await first.count("alice", T0)


async def test_keys_are_hashes_that_any_name_can_have() -> None:
    assert attempts_key("Alice") == attempts_key("alice")
    for name in ("a..b", "a.", "*", ">", "ü", ""):
        key = attempts_key(name)
        assert len(key) == 64
        assert all(c in "0123456789abcdef" for c in key)
