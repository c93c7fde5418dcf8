"""A small in-process limiter for failed logins per client address: fixed windows per key.

It stops one address guessing many names before any intent is sent. Attempts per *username* are
the runtime's to count (``runtime_worker/attempts.py``): shared by every Experience process, they
stop many addresses guessing one name too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from intents import RateLimited


class LoginLimiter:
    """Counts failures per key within a window of ``window_s`` seconds."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}

    def check(self, *keys: str) -> None:
        """Raise ``RateLimited`` if any key used up its failures in the current window."""
        now = self.clock()
        for key in keys:
            started, count = self._windows.get(key, (now, 0))
            if now - started >= self.window_s:
                self._windows.pop(key, None)
            elif count >= self.limit:
                raise RateLimited(
                    "too many login attempts; try again later",
                    max(1, math.ceil(started + self.window_s - now)),
                )

    def failed(self, *keys: str) -> None:
        """Count one failure against each key."""
        now = self.clock()
        self._prune(now)
        for key in keys:
            started, count = self._windows.get(key, (now, 0))
            if now - started >= self.window_s:
                started, count = now, 0
            self._windows[key] = (started, count + 1)

    def _prune(self, now: float) -> None:
        # Bound memory under a flood of distinct keys.
        if len(self._windows) > 10_000:
            stale = [k for k, (s, _) in self._windows.items() if now - s >= self.window_s]
            for key in stale:
                del self._windows[key]
