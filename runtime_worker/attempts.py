"""Login attempts per username, counted in the ``login_attempts`` bucket that every worker shares.

However many Experience processes and workers run, one username gets ``limit`` attempts per
window. An attempt is counted (compare-and-set) *before* the password is checked, so parallel
guesses cannot all slip in before the first failure is recorded; a success clears the count.
Unknown names are counted like known ones: the answer never tells them apart. Keys are hashes of
the lowercased name (any name is a safe key, and names are not listed by ``nats kv ls``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from intents import RateLimited
from runtime_worker.kv import Bucket, KeyExists, RevisionMismatch
from runtime_worker.store import MAX_CAS_ATTEMPTS


class Attempts(BaseModel):
    """Attempts in the window that began at ``since``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int
    since: datetime


def attempts_key(username: str) -> str:
    """The bucket key of a username."""
    return hashlib.sha256(username.lower().encode()).hexdigest()


class LoginAttempts:
    """At most ``limit`` login attempts per username per ``window``."""

    def __init__(self, bucket: Bucket, limit: int, window: timedelta) -> None:
        self._bucket = bucket
        self._limit = limit
        self._window = window

    async def count(self, username: str, now: datetime) -> None:
        """Count one attempt, or raise ``RateLimited`` (with ``retry_after``) if none is left."""
        key = attempts_key(username)
        for _ in range(MAX_CAS_ATTEMPTS):
            entry = await self._bucket.get(key)
            if entry is None:
                with contextlib.suppress(KeyExists):
                    await self._bucket.create(key, _dump(Attempts(count=1, since=now)))
                    return
                continue
            current = Attempts.model_validate_json(entry.value)
            if now - current.since >= self._window:
                counted = Attempts(count=1, since=now)
            elif current.count >= self._limit:
                left = (current.since + self._window - now).total_seconds()
                raise RateLimited("too many login attempts; try again later", math.ceil(left))
            else:
                counted = Attempts(count=current.count + 1, since=current.since)
            with contextlib.suppress(RevisionMismatch):
                await self._bucket.update(key, _dump(counted), entry.revision)
                return
        # Every try lost a race: this name is being tried many times at this very moment.
        raise RateLimited("too many login attempts at once; try again later", 1)

    async def clear(self, username: str) -> None:
        """Forget the attempts of a username after a successful login."""
        key = attempts_key(username)
        entry = await self._bucket.get(key)
        if entry is not None:
            with contextlib.suppress(RevisionMismatch):  # another attempt counted meanwhile
                await self._bucket.delete(key, entry.revision)


def _dump(attempts: Attempts) -> bytes:
    return attempts.model_dump_json().encode()
