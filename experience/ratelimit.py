"""A small in-process limiter for login attempts: fixed windows per key.

Failed attempts are counted per client address and per username, so neither one address
guessing many names nor many addresses guessing one name gets far.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from intents import RateLimited


class LoginLimited(RateLimited):
    """Too many failed logins; ``retry_after`` says when the window ends."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many login attempts; try again later")
        self.retry_after = retry_after


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
        """Raise ``LoginLimited`` if any key used up its failures in the current window."""
        now = self.clock()
        for key in keys:
            started, count = self._windows.get(key, (now, 0))
            if now - started >= self.window_s:
                self._windows.pop(key, None)
            elif count >= self.limit:
                raise LoginLimited(max(1, math.ceil(started + self.window_s - now)))

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
