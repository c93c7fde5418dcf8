"""The login limiter per client address: failed attempts per key within a window."""

from __future__ import annotations

import pytest

from experience.ratelimit import LoginLimiter
from intents import AuthenticationFailed, RateLimited, RuntimeUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fail(limiter: LoginLimiter, key: str) -> None:
    with pytest.raises(AuthenticationFailed), limiter.attempt(key):
        raise AuthenticationFailed()


def test_limit_reached_then_window_passes() -> None:
    clock = Clock()
    limiter = LoginLimiter(limit=3, window_s=60, clock=clock)
    for _ in range(3):
        fail(limiter, "ip:1")
    with pytest.raises(RateLimited) as caught, limiter.attempt("ip:1"):
        pass
    assert caught.value.retry_after == 60
    clock.now += 45
    with pytest.raises(RateLimited) as caught, limiter.attempt("ip:1"):
        pass
    assert caught.value.retry_after == 15
    with limiter.attempt("ip:2"):
        pass
    clock.now += 15
    with limiter.attempt("ip:1"):
        pass


def test_only_failures_count() -> None:
    limiter = LoginLimiter(limit=1, window_s=60, clock=Clock())
    for _ in range(3):
        with limiter.attempt("ip:1"):
            pass  # a success
        with pytest.raises(RuntimeUnavailable), limiter.attempt("ip:1"):
            raise RuntimeUnavailable("away")
    fail(limiter, "ip:1")
    with pytest.raises(RateLimited), limiter.attempt("ip:1"):
        pass


def test_attempts_under_way_count_so_a_burst_cannot_pass_at_once() -> None:
    limiter = LoginLimiter(limit=2, window_s=60, clock=Clock())
    with limiter.attempt("ip:1"), limiter.attempt("ip:1"):
        with pytest.raises(RateLimited), limiter.attempt("ip:1"):
            pass
        with limiter.attempt("ip:2"):
            pass
    with limiter.attempt("ip:1"):  # both ended well: given back
        pass
