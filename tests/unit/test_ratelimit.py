"""The login limiter: failures per key within a window."""

from __future__ import annotations

import pytest

from experience.ratelimit import LoginLimiter
from intents import RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_limit_reached_then_window_passes() -> None:
    clock = Clock()
    limiter = LoginLimiter(limit=3, window_s=60, clock=clock)
    for _ in range(3):
        limiter.check("ip:1", "user:a")
        limiter.failed("ip:1", "user:a")
    with pytest.raises(RateLimited) as caught:
        limiter.check("ip:1", "user:a")
    assert caught.value.retry_after == 60
    clock.now += 45
    with pytest.raises(RateLimited) as caught:
        limiter.check("ip:2", "user:a")
    assert caught.value.retry_after == 15
    limiter.check("ip:2", "user:b")
    clock.now += 15
    limiter.check("ip:1", "user:a")


def test_keys_count_separately() -> None:
    limiter = LoginLimiter(limit=1, window_s=60, clock=Clock())
    limiter.failed("user:a")
    with pytest.raises(RateLimited):
        limiter.check("user:a")
    limiter.check("user:b")
