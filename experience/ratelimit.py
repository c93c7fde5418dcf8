"""A small in-process limiter for failed logins per client address: fixed windows per key.

It stops one address guessing many names before any intent is sent. An attempt is counted as
it starts (check and count with no ``await`` between, so a burst of parallel attempts cannot all
pass before the first failure is known) and given back unless it failed. Attempts per (username,
address) and the slowdown per username are the runtime's (``runtime_worker/attempts.py``),
shared by every Experience process.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

from intents import AuthenticationFailed, RateLimited, SymphainyError
from telemetry import record


class LoginLimiter:
    """Counts failures (and attempts still running) per key within a window of ``window_s``."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}

    @contextlib.contextmanager
    def attempt(self, key: str) -> Iterator[None]:
        """One login attempt from ``key``: refused with ``RateLimited`` if the key used up its
        window; it counts against the key if it ends in ``AuthenticationFailed``."""
        self.start(key)
        failed = False
        try:
            yield
        except SymphainyError as exc:
            record.login_failed(exc.code)
            failed = isinstance(exc, AuthenticationFailed)
            raise
        finally:
            if not failed:
                self.give_back(key)

    def start(self, key: str) -> None:
        """Count one attempt, or raise ``RateLimited`` if the key has none left."""
        now = self.clock()
        self._prune(now)
        started, count = self._windows.get(key, (now, 0))
        if now - started >= self.window_s:
            started, count = now, 0
        if count >= self.limit:
            record.rate_limited(key.partition(":")[0])
            record.login_failed(RateLimited.code)
            raise RateLimited(
                "too many login attempts; try again later",
                max(1, math.ceil(started + self.window_s - now)),
            )
        self._windows[key] = (started, count + 1)

    def give_back(self, key: str) -> None:
        """Uncount an attempt that did not fail (it succeeded, or the runtime was away)."""
        window = self._windows.get(key)
        if window is not None and window[1] > 0:
            self._windows[key] = (window[0], window[1] - 1)

    def _prune(self, now: float) -> None:
        # Bound memory under a flood of distinct keys.
        if len(self._windows) > 10_000:
            stale = [k for k, (s, _) in self._windows.items() if now - s >= self.window_s]
            for key in stale:
                del self._windows[key]
