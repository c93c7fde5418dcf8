"""Session handlers: plain functions, a typed intent in and a typed reply out.

A session is ``active`` until it is revoked or expires, never back. It expires at the earlier of
its idle deadline (``last_seen_at + idle_timeout``) and its absolute lifetime.

Each session records the ``jti`` of its one current token, new at every create and refresh; an
older token is refused, and refreshing with one revokes the session (it was copied: whoever
holds it is not the client that refreshed). A user holds at most ``max_per_user`` live
sessions: creating one more revokes the oldest (their sockets close through the gate's watch).
"""

from __future__ import annotations

import asyncio
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
    TokenInvalid,
    VerifySession,
    VerifySessionReply,
    new_id,
)
from runtime_worker.kv import KeyExists, RevisionMismatch
from runtime_worker.store import IdempotencyStore, SessionStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionPolicy:
    """How long sessions live, how often a verification records use, how many a user holds."""

    idle_timeout: timedelta
    max_lifetime: timedelta
    touch_interval: timedelta
    max_per_user: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        """The policy the settings describe."""
        return cls(
            idle_timeout=timedelta(seconds=settings.session_idle_timeout_s),
            max_lifetime=timedelta(seconds=settings.session_max_lifetime_s),
            touch_interval=timedelta(seconds=settings.session_touch_interval_s),
            max_per_user=settings.max_sessions_per_user,
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


def ensure_current(session: SessionInfo, jti: str | None) -> None:
    """Raise ``TokenInvalid`` if ``jti`` names a token of this session that a refresh replaced.

    A session stored before rotation (no recorded jti) accepts any token until its first refresh.
    """
    if jti is not None and session.jti is not None and jti != session.jti:
        raise TokenInvalid("session token superseded by a refresh")


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
            jti=new_id(),
        )
        try:
            await sessions.create(session)
        except KeyExists:
            if intent.idempotency_key is not None:
                existing, _ = await sessions.require(session_id)
                return CreateSessionReply(session=effective(existing, now), created=False)
            session_id = new_id()
            continue
        try:
            await evict_oldest(sessions, session, policy.max_per_user, now)
        except SymphainyError as exc:
            # The session exists: answer with it; the next create evicts what this one could not.
            log.warning("user %s: eviction failed: %s", session.user_id, exc.code)
        return CreateSessionReply(session=session, created=True)


async def evict_oldest(
    sessions: SessionStore, newest: SessionInfo, limit: int, now: datetime
) -> list[str]:
    """Revoke the oldest live sessions of ``newest``'s user beyond ``limit``; their ids.

    ``newest`` is never evicted. Two creates racing may each evict, leaving the user one or two
    under the cap for a moment: never over it once both are done.
    """
    live = [
        (s, rev)
        for s, rev in await sessions.of_user_stored(newest.user_id)
        if s.session_id != newest.session_id and effective(s, now).state is SessionState.ACTIVE
    ]
    excess = len(live) + 1 - limit
    if excess <= 0:
        return []
    live.sort(key=lambda stored: (stored[0].created_at, stored[0].session_id))
    evicted = await _revoke_each(sessions, live[:excess], now, "evicted: too many sessions")
    if evicted:
        log.info("user %s: evicted %d oldest session(s)", newest.user_id, len(evicted))
    return evicted


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
    ensure_current(session, intent.jti)
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
    """Rotate the session's token and push its idle deadline to ``now + idle_timeout``.

    A superseded ``jti`` is reuse of a stale token: the session is revoked, ``SessionRevoked``.
    """
    reused = False

    def change(session: SessionInfo) -> SessionInfo | None:
        nonlocal reused
        ensure_owner(session, intent.user_id)
        ensure_live(session, now)
        try:
            ensure_current(session, intent.jti)
        except TokenInvalid:
            reused = True
            return revoked(session, now, "refresh token reused")
        reused = False
        return touched(session, now, policy).model_copy(update={"jti": new_id()})

    session = await sessions.mutate(intent.session_id, change)
    if reused:
        log.warning("session %s: a superseded token came to refresh; revoked", session.session_id)
        raise SessionRevoked("a superseded token was presented: session revoked")
    return RefreshSessionReply(session=session)


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
    targets = [
        (s, rev)
        for s, rev in await sessions.of_user_stored(user_id)
        if s.session_id != spare and s.state is SessionState.ACTIVE
    ]
    return await _revoke_each(sessions, targets, now, reason)


# Sessions that lost their first write to a concurrent change, read again and retried at once.
RETRY_CONCURRENCY = 64


async def _revoke_each(
    sessions: SessionStore, targets: list[tuple[SessionInfo, int]], now: datetime, reason: str
) -> list[str]:
    """Revoke each of ``targets`` (sessions as read, with their revisions) still active; the ids
    this call revoked.

    Each is one compare-and-set write from what was read, all sent as one pipelined batch; a
    session that changed since is read again and revoked if it is still active (``mutate``).
    """
    updates = [
        (update, revision)
        for session, revision in targets
        if (update := revoked(session, now, reason)) is not None
    ]
    written = await sessions.replace_many(updates)
    slots = asyncio.Semaphore(RETRY_CONCURRENCY)

    async def again(session_id: str) -> bool:
        async with slots:
            try:
                after = await sessions.mutate(session_id, lambda s: revoked(s, now, reason))
            except SessionNotFound:
                return False
            # Ours if it carries this call's mark (a retried batch write may have landed).
            return after.revoked_at == now and after.revoked_reason == reason

    lost = [update.session_id for (update, _), ok in zip(updates, written, strict=True) if not ok]
    retried = dict(zip(lost, await asyncio.gather(*(again(sid) for sid in lost)), strict=True))
    return [
        update.session_id
        for (update, _), ok in zip(updates, written, strict=True)
        if ok or retried[update.session_id]
    ]


async def revoke_user_sessions(
    intent: RevokeUserSessions, sessions: SessionStore, now: datetime
) -> RevokeUserSessionsReply:
    """Log a user out everywhere (or everywhere else)."""
    ids = await revoke_all(sessions, intent.user_id, now, intent.reason, intent.except_session_id)
    return RevokeUserSessionsReply(revoked=ids)
