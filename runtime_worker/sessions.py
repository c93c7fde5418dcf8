"""Session handlers: plain functions, a typed intent in and a typed reply out.

A session is ``active`` until it is revoked or expires, never back. It expires at the earlier of
its idle deadline (``last_seen_at + idle_timeout``) and its absolute lifetime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bus.settings import Settings
from intents import (
    CreateSession,
    CreateSessionReply,
    GetSession,
    GetSessionReply,
    ListSessions,
    ListSessionsReply,
    RefreshSession,
    RefreshSessionReply,
    RevokeSession,
    RevokeSessionReply,
    RevokeUserSessions,
    RevokeUserSessionsReply,
    SessionExpired,
    SessionInfo,
    SessionNotFound,
    SessionRevoked,
    SessionState,
    SymphainyError,
    VerifySession,
    VerifySessionReply,
    new_id,
)
from runtime_worker.kv import KeyExists, RevisionMismatch
from runtime_worker.store import IdempotencyStore, SessionStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionPolicy:
    """How long sessions live, and how often a verification records use."""

    idle_timeout: timedelta
    max_lifetime: timedelta
    touch_interval: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        """The policy the settings describe."""
        return cls(
            idle_timeout=timedelta(seconds=settings.session_idle_timeout_s),
            max_lifetime=timedelta(seconds=settings.session_max_lifetime_s),
            touch_interval=timedelta(seconds=settings.session_touch_interval_s),
        )


def effective(session: SessionInfo, now: datetime) -> SessionInfo:
    """The session as it stands at ``now``: an active one past its expiry reads as expired."""
    if session.state is SessionState.ACTIVE and now >= session.expires_at:
        return session.model_copy(update={"state": SessionState.EXPIRED})
    return session


def ensure_owner(session: SessionInfo, user_id: str | None) -> None:
    """Another user's session is reported exactly like a missing one."""
    if user_id is not None and session.user_id != user_id:
        raise SessionNotFound()


def ensure_live(session: SessionInfo, now: datetime) -> None:
    """Raise ``SessionRevoked`` or ``SessionExpired`` unless the session is usable."""
    state = effective(session, now).state
    if state is SessionState.REVOKED:
        raise SessionRevoked()
    if state is SessionState.EXPIRED:
        raise SessionExpired()


def touched(session: SessionInfo, now: datetime, policy: SessionPolicy) -> SessionInfo:
    """The session marked as used at ``now``: idle deadline pushed, lifetime untouched."""
    return session.model_copy(
        update={
            "last_seen_at": now,
            "expires_at": min(now + policy.idle_timeout, session.absolute_expires_at),
        }
    )


def revoked(session: SessionInfo, now: datetime, reason: str) -> SessionInfo | None:
    """The session revoked at ``now``, or None if it already ended."""
    if session.state is not SessionState.ACTIVE:
        return None
    return session.model_copy(
        update={"state": SessionState.REVOKED, "revoked_at": now, "revoked_reason": reason}
    )


def _expired(session: SessionInfo) -> SessionInfo | None:
    if session.state is not SessionState.ACTIVE:
        return None
    return session.model_copy(update={"state": SessionState.EXPIRED})


async def create_session(
    intent: CreateSession,
    sessions: SessionStore,
    idempotency: IdempotencyStore,
    policy: SessionPolicy,
    now: datetime,
) -> CreateSessionReply:
    """Open a session under a fresh random id (128 bits), claimed with KV ``create``."""
    session_id = new_id()
    if intent.idempotency_key is not None:
        key = IdempotencyStore.key(intent.user_id, intent.idempotency_key)
        owner = await idempotency.claim(key, session_id)
        if owner != session_id:
            found = await sessions.get(owner)
            if found is not None:
                return CreateSessionReply(session=effective(found[0], now), created=False)
            # The first attempt claimed the key but never stored its session: finish its job.
            session_id = owner
    while True:
        session = SessionInfo(
            session_id=session_id,
            user_id=intent.user_id,
            username=intent.username,
            state=SessionState.ACTIVE,
            created_at=now,
            last_seen_at=now,
            expires_at=min(now + policy.idle_timeout, now + policy.max_lifetime),
            absolute_expires_at=now + policy.max_lifetime,
        )
        try:
            await sessions.create(session)
        except KeyExists:
            if intent.idempotency_key is not None:
                existing, _ = await sessions.require(session_id)
                return CreateSessionReply(session=effective(existing, now), created=False)
            session_id = new_id()
            continue
        return CreateSessionReply(session=session, created=True)


async def verify_session(
    intent: VerifySession, sessions: SessionStore, policy: SessionPolicy, now: datetime
) -> VerifySessionReply:
    """The fast path: one read, and a write at most once per ``touch_interval``."""
    session, revision = await sessions.require(intent.session_id)
    ensure_owner(session, intent.user_id)
    try:
        ensure_live(session, now)
    except SessionExpired:
        await _mark_expired(sessions, session.session_id)
        raise
    if now - session.last_seen_at >= policy.touch_interval:
        fresh = touched(session, now, policy)
        try:
            await sessions.replace(fresh, revision)
            session = fresh
        except RevisionMismatch:
            # Someone wrote in between (a revoke, perhaps): judge by what is there now.
            session, _ = await sessions.require(intent.session_id)
            ensure_live(session, now)
    return VerifySessionReply(
        session_id=session.session_id,
        user_id=session.user_id,
        username=session.username,
        expires_at=session.expires_at,
        absolute_expires_at=session.absolute_expires_at,
    )


async def _mark_expired(sessions: SessionStore, session_id: str) -> None:
    try:
        await sessions.mutate(session_id, _expired)
    except SymphainyError:
        log.debug("could not mark session %s expired; it reads as expired anyway", session_id)


async def get_session(intent: GetSession, sessions: SessionStore, now: datetime) -> GetSessionReply:
    """One session in any state, if it is the caller's."""
    session, _ = await sessions.require(intent.session_id)
    ensure_owner(session, intent.user_id)
    return GetSessionReply(session=effective(session, now))


async def list_sessions(
    intent: ListSessions, sessions: SessionStore, now: datetime
) -> ListSessionsReply:
    """Sessions of a user (or everyone's), live ones unless ``include_inactive``."""
    username = intent.username.lower() if intent.username else None
    found = []
    stored = await (sessions.all() if intent.user_id is None else sessions.of_user(intent.user_id))
    for session in stored:
        if username is not None and session.username.lower() != username:
            continue
        view = effective(session, now)
        if intent.include_inactive or view.state is SessionState.ACTIVE:
            found.append(view)
    found.sort(key=lambda s: (s.created_at, s.session_id))
    return ListSessionsReply(sessions=found)


async def refresh_session(
    intent: RefreshSession, sessions: SessionStore, policy: SessionPolicy, now: datetime
) -> RefreshSessionReply:
    """Extend a live session's idle deadline to ``now + idle_timeout`` (within its lifetime)."""

    def change(session: SessionInfo) -> SessionInfo:
        ensure_owner(session, intent.user_id)
        ensure_live(session, now)
        return touched(session, now, policy)

    return RefreshSessionReply(session=await sessions.mutate(intent.session_id, change))


async def revoke_session(
    intent: RevokeSession, sessions: SessionStore, now: datetime
) -> RevokeSessionReply:
    """Revoke one session; revoking an ended session changes nothing and is not an error."""

    def change(session: SessionInfo) -> SessionInfo | None:
        ensure_owner(session, intent.user_id)
        return revoked(session, now, intent.reason)

    session = await sessions.mutate(intent.session_id, change)
    return RevokeSessionReply(session=effective(session, now))


async def revoke_all(
    sessions: SessionStore, user_id: str, now: datetime, reason: str, spare: str | None = None
) -> list[str]:
    """Revoke every active session of ``user_id`` but ``spare``; the ids that were revoked."""
    done = []
    for session in await sessions.of_user(user_id):
        if session.session_id == spare:
            continue
        if session.state is not SessionState.ACTIVE:
            continue
        try:
            after = await sessions.mutate(session.session_id, lambda s: revoked(s, now, reason))
        except SessionNotFound:
            continue
        if after.revoked_at == now:
            done.append(session.session_id)
    return done


async def revoke_user_sessions(
    intent: RevokeUserSessions, sessions: SessionStore, now: datetime
) -> RevokeUserSessionsReply:
    """Log a user out everywhere (or everywhere else)."""
    ids = await revoke_all(sessions, intent.user_id, now, intent.reason, intent.except_session_id)
    return RevokeUserSessionsReply(revoked=ids)
