"""Login attempts, counted in the ``login_attempts`` bucket that every worker shares.

Two counts, so that a stranger cannot lock a user out:

- per (username, client address), a hard limit: ``limit`` attempts per window, counted
  (compare-and-set) *before* the password is checked, so parallel guesses cannot all slip in
  before the first failure is recorded; a success clears it. Only the guesser's own address is
  refused.
- per username, only a slowdown: failures on the name in the window delay the answer to every
  attempt on it (from any address), doubling from ``FIRST_DELAY`` up to ``max_delay``. The
  password is still checked, so the right password still succeeds, just a little later.

Unknown names are counted like known ones: the answer never tells them apart. Keys are hashes
(any name or address is a safe key, and names are not listed by ``nats kv ls``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from bus.settings import Settings
from intents import RateLimited
from runtime_worker.kv import Bucket, KeyExists, RevisionMismatch
from runtime_worker.store import MAX_CAS_ATTEMPTS

# The delay of the first slowed attempt; each further failure doubles it, up to the cap.
FIRST_DELAY = timedelta(milliseconds=100)


class Attempts(BaseModel):
    """Attempts (or failures) in the window that began at ``since``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int
    since: datetime


def attempts_key(username: str) -> str:
    """The bucket key of a username's failures."""
    return hashlib.sha256(username.lower().encode()).hexdigest()


def pair_key(username: str, address: str) -> str:
    """The bucket key of the attempts on a username from one client address."""
    # JSON keeps the two apart: no name and address can spell another pair.
    return hashlib.sha256(json.dumps(["pair", username.lower(), address]).encode()).hexdigest()


@dataclass(frozen=True)
class Slowdown:
    """How failures on one name slow every attempt on it: none below ``after`` failures, then
    ``FIRST_DELAY`` doubling per failure, never more than ``max_delay``."""

    after: int
    max_delay: timedelta

    def delay(self, failures: int) -> timedelta:
        """The delay of an attempt on a name that failed ``failures`` times in the window."""
        if failures < self.after or self.max_delay <= timedelta(0):
            return timedelta(0)
        doublings = min(failures - self.after, 32)  # 2**32 tenths of a second: past any cap
        return min(self.max_delay, FIRST_DELAY * (1 << doublings))


NO_SLOWDOWN = Slowdown(after=0, max_delay=timedelta(0))


class LoginAttempts:
    """At most ``limit`` attempts per (username, address) per ``window``; per username, a
    slowdown."""

    def __init__(
        self, bucket: Bucket, limit: int, window: timedelta, slowdown: Slowdown | None = None
    ) -> None:
        self._bucket = bucket
        self._limit = limit
        self._window = window
        self._slowdown = slowdown or NO_SLOWDOWN

    @classmethod
    def from_settings(cls, bucket: Bucket, settings: Settings) -> LoginAttempts:
        """The limits and slowdown the settings describe."""
        return cls(
            bucket,
            settings.login_rate_limit,
            timedelta(seconds=settings.login_rate_window_s),
            Slowdown(
                after=settings.login_slowdown_after,
                max_delay=timedelta(seconds=settings.login_slowdown_max_s),
            ),
        )

    async def begin(self, username: str, address: str, now: datetime) -> timedelta:
        """Count one attempt from ``address`` on ``username``; the delay its answer must wait.

        Raises ``RateLimited`` (with ``retry_after``) if this address used up its attempts on
        this name.
        """
        if not await self._add(pair_key(username, address), now, self._limit):
            # Every try lost a race: this address is trying this name many times at this moment.
            raise RateLimited("too many login attempts at once; try again later", 1)
        return self._slowdown.delay(await self._failures(attempts_key(username), now))

    async def failed(self, username: str, now: datetime) -> None:
        """Count one failure on ``username`` (from any address).

        A lost race only means one failure fewer: the slowdown is a deterrent, not a limit.
        """
        await self._add(attempts_key(username), now, None)

    async def succeeded(self, username: str, address: str) -> None:
        """Forget the attempts from ``address`` on ``username``.

        The name's failures stay: a stranger's guesses keep being slowed after the user logs in.
        """
        key = pair_key(username, address)
        entry = await self._bucket.get(key)
        if entry is not None:
            with contextlib.suppress(RevisionMismatch):  # another attempt counted meanwhile
                await self._bucket.delete(key, entry.revision)

    async def _failures(self, key: str, now: datetime) -> int:
        entry = await self._bucket.get(key)
        if entry is None:
            return 0
        current = Attempts.model_validate_json(entry.value)
        return 0 if now - current.since >= self._window else current.count

    async def _add(self, key: str, now: datetime, limit: int | None) -> bool:
        """Count one more in the key's window (compare-and-set); False if every try lost a race.

        At ``limit`` in the window, raise ``RateLimited`` until the window ends.
        """
        for _ in range(MAX_CAS_ATTEMPTS):
            entry = await self._bucket.get(key)
            if entry is None:
                with contextlib.suppress(KeyExists):
                    await self._bucket.create(key, _dump(Attempts(count=1, since=now)))
                    return True
                continue
            current = Attempts.model_validate_json(entry.value)
            if now - current.since >= self._window:
                counted = Attempts(count=1, since=now)
            elif limit is not None and current.count >= limit:
                left = (current.since + self._window - now).total_seconds()
                raise RateLimited("too many login attempts; try again later", math.ceil(left))
            else:
                counted = Attempts(count=current.count + 1, since=current.since)
            with contextlib.suppress(RevisionMismatch):
                await self._bucket.update(key, _dump(counted), entry.revision)
                return True
        return False


def _dump(attempts: Attempts) -> bytes:
    return attempts.model_dump_json().encode()
