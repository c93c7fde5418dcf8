"""Typed stores over the buckets: sessions by id, users by name, idempotency keys.

Every write is revision-checked. ``SessionStore.mutate`` is the compare-and-set loop that all
session state changes go through.

A user's sessions are found through the ``sessions_by_user`` index (key ``<user id>.<session
id>``), written before the session itself: a session never exists without its index entry, so
"log out everywhere" cannot miss one. An entry whose session was never created (the id was taken)
is harmless: sessions read through the index are checked to belong to the user.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, ValidationError

from intents import SessionInfo, SessionNotFound, UserInfo, WriteConflict
from runtime_worker.kv import Bucket, KeyExists, RevisionMismatch

MAX_CAS_ATTEMPTS = 16


class UserRecord(BaseModel):
    """A user as stored: the public view plus the password hash.

    A user who logs in through an OpenID provider has its ``issuer`` and ``subject`` and no
    password (an empty hash, which no password matches).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    username: str
    password_hash: str
    created_at: datetime
    issuer: str | None = None
    subject: str | None = None

    @property
    def external(self) -> bool:
        """Whether the user logs in through a provider rather than with a password."""
        return self.issuer is not None

    def info(self) -> UserInfo:
        """The public view."""
        return UserInfo(
            id=self.id, username=self.username, created_at=self.created_at, issuer=self.issuer
        )


def user_key(username: str) -> str:
    """Usernames are case-insensitive: the key is the lowercased name."""
    return username.lower()


def index_key(user_id: str, session_id: str) -> str:
    """The ``sessions_by_user`` key of a session."""
    return f"{user_id}.{session_id}"


class SessionStore:
    """Sessions by id, as readable JSON (``nats kv get sessions <id>``), indexed by user."""

    def __init__(self, bucket: Bucket, by_user: Bucket) -> None:
        self._bucket = bucket
        self._by_user = by_user

    async def get(self, session_id: str) -> tuple[SessionInfo, int] | None:
        """The session and its revision, or None."""
        entry = await self._bucket.get(session_id)
        if entry is None:
            return None
        return SessionInfo.model_validate_json(entry.value), entry.revision

    async def require(self, session_id: str) -> tuple[SessionInfo, int]:
        """The session and its revision, or ``SessionNotFound``."""
        found = await self.get(session_id)
        if found is None:
            raise SessionNotFound()
        return found

    async def create(self, session: SessionInfo) -> int:
        """Index the session under its user, then claim the id; ``KeyExists`` if it is taken."""
        await self._index(session)
        return await self._bucket.create(session.session_id, _dump(session))

    async def _index(self, session: SessionInfo) -> bool:
        """Write the session's index entry; False if it was there already (a retried write)."""
        try:
            await self._by_user.create(
                index_key(session.user_id, session.session_id), session.session_id.encode()
            )
        except KeyExists:
            return False
        return True

    async def of_user(self, user_id: str) -> list[SessionInfo]:
        """Every stored session of ``user_id``, found through the index (no scan of the bucket)."""
        return [session for session, _ in await self.of_user_stored(user_id)]

    async def of_user_stored(self, user_id: str) -> list[tuple[SessionInfo, int]]:
        """``of_user`` with each session's revision, for compare-and-set writes."""
        # The index key names the session (``<user id>.<session id>``): no need to read values.
        keys = await self._by_user.keys(index_key(user_id, "*"))
        entries = await self._bucket.get_many([key.rsplit(".", 1)[-1] for key in keys])
        found = [(SessionInfo.model_validate_json(e.value), e.revision) for e in entries]
        return [(s, rev) for s, rev in found if s.user_id == user_id]

    async def reindex(self) -> int:
        """Index every stored session (for sessions older than the index); how many were added.

        Idempotent, and cheap to skip: call it when the index holds fewer entries than the bucket.
        """
        added = 0
        for session in await self.all():
            added += await self._index(session)
        return added

    async def replace(self, session: SessionInfo, revision: int) -> int:
        """One compare-and-set write; raises ``RevisionMismatch`` if the session changed."""
        return await self._bucket.update(session.session_id, _dump(session), revision)

    async def replace_many(self, updates: Sequence[tuple[SessionInfo, int]]) -> list[bool]:
        """``replace`` of each (session, revision) at once: whether each was written (False: it
        changed since it was read)."""
        writes = [(s.session_id, _dump(s), revision) for s, revision in updates]
        return [revision is not None for revision in await self._bucket.update_many(writes)]

    async def mutate(
        self, session_id: str, change: Callable[[SessionInfo], SessionInfo | None]
    ) -> SessionInfo:
        """Apply ``change`` with compare-and-set, re-reading on every lost race.

        ``change`` gets the current session and returns the new one, or None to leave it as is
        (it may also raise). Returns the session as finally stored.
        """
        for _ in range(MAX_CAS_ATTEMPTS):
            current, revision = await self.require(session_id)
            updated = change(current)
            if updated is None or updated == current:
                return current
            try:
                await self._bucket.update(session_id, _dump(updated), revision)
            except RevisionMismatch:
                continue
            return updated
        raise WriteConflict(f"session {session_id} kept changing; retry")

    async def all(self) -> list[SessionInfo]:
        """Every stored session (a full scan: fine for the sizes one bucket holds)."""
        sessions = []
        for entry in await self._bucket.entries():
            try:
                sessions.append(SessionInfo.model_validate_json(entry.value))
            except ValidationError:
                continue
        return sessions


class UserStore:
    """Users by lowercased name."""

    def __init__(self, bucket: Bucket) -> None:
        self._bucket = bucket

    async def get(self, username: str) -> tuple[UserRecord, int] | None:
        """The user and its revision, or None."""
        entry = await self._bucket.get(user_key(username))
        if entry is None:
            return None
        return UserRecord.model_validate_json(entry.value), entry.revision

    async def create(self, user: UserRecord) -> int:
        """Add a user; raises ``KeyExists`` if the name is taken."""
        return await self._bucket.create(user_key(user.username), _dump(user))

    async def replace(self, user: UserRecord, revision: int) -> int:
        """One compare-and-set write; raises ``RevisionMismatch`` if the user changed."""
        return await self._bucket.update(user_key(user.username), _dump(user), revision)

    async def delete(self, username: str, revision: int) -> None:
        """Remove a user at ``revision``."""
        await self._bucket.delete(user_key(username), revision)

    async def all(self) -> list[UserRecord]:
        """Every user."""
        return [UserRecord.model_validate_json(e.value) for e in await self._bucket.entries()]


class IdempotencyStore:
    """Maps (user, Idempotency-Key) to the session it created."""

    def __init__(self, bucket: Bucket) -> None:
        self._bucket = bucket

    @staticmethod
    def key(user_id: str, idempotency_key: str) -> str:
        """A KV-safe key: the client's key may hold any character."""
        return hashlib.sha256(f"{user_id}\x00{idempotency_key}".encode()).hexdigest()

    async def claim(self, key: str, session_id: str) -> str:
        """Claim ``key`` for ``session_id``; returns the session id that owns it (maybe older)."""
        try:
            await self._bucket.create(key, session_id.encode())
        except KeyExists:
            entry = await self._bucket.get(key)
            if entry is None:
                # Expired between our two calls: claim it again.
                return await self.claim(key, session_id)
            return entry.value.decode()
        return session_id


def _dump(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


__all__ = ["IdempotencyStore", "KeyExists", "SessionStore", "UserRecord", "UserStore"]
