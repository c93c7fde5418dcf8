"""Session handlers over an in-memory bucket: the state machine, expiry, ownership, CAS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from intents import (
    CreateSession,
    GetSession,
    ListSessions,
    RefreshSession,
    RevokeSession,
    RevokeUserSessions,
    SessionExpired,
    SessionNotFound,
    SessionRevoked,
    SessionState,
    TokenInvalid,
    VerifySession,
    WriteConflict,
)
from runtime_worker import sessions as h
from runtime_worker.kv import MemoryBucket
from runtime_worker.store import IdempotencyStore, SessionStore

ALICE = "a" * 32
BOB = "b" * 32
T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = h.SessionPolicy(
    idle_timeout=timedelta(minutes=30),
    max_lifetime=timedelta(hours=2),
    touch_interval=timedelta(seconds=60),
)


@pytest.fixture
def store() -> SessionStore:
    return SessionStore(MemoryBucket(), MemoryBucket())


@pytest.fixture
def idem() -> IdempotencyStore:
    return IdempotencyStore(MemoryBucket())


async def open_session(
    store: SessionStore, idem: IdempotencyStore, user: str = ALICE, key: str | None = None
) -> str:
    reply = await h.create_session(
        CreateSession(user_id=user, username=f"u{user[0]}", idempotency_key=key),
        store,
        idem,
        POLICY,
        T0,
    )
    return reply.session.session_id


async def test_create_gives_random_active_sessions(
    store: SessionStore, idem: IdempotencyStore
) -> None:
    first = await open_session(store, idem)
    second = await open_session(store, idem)
    assert first != second
    session, _ = await store.require(first)
    assert session.state is SessionState.ACTIVE
    assert session.expires_at == T0 + POLICY.idle_timeout
    assert session.absolute_expires_at == T0 + POLICY.max_lifetime


async def test_idempotency_key_returns_the_same_session(
    store: SessionStore, idem: IdempotencyStore
) -> None:
    first = await open_session(store, idem, key="k1")
    again = await h.create_session(
        CreateSession(user_id=ALICE, username="ua", idempotency_key="k1"), store, idem, POLICY, T0
    )
    assert again.session.session_id == first
    assert again.created is False
    other_user = await open_session(store, idem, user=BOB, key="k1")
    assert other_user != first
    assert await open_session(store, idem, key="k2") != first


async def test_idempotent_retry_finishes_a_half_done_create(
    store: SessionStore, idem: IdempotencyStore
) -> None:
    # The first attempt claimed the key and died before storing its session.
    await idem.claim(IdempotencyStore.key(ALICE, "k"), "c" * 32)
    reply = await h.create_session(
        CreateSession(user_id=ALICE, username="ua", idempotency_key="k"), store, idem, POLICY, T0
    )
    assert reply.session.session_id == "c" * 32
    assert reply.created is True


async def test_verify_checks_owner_state_and_expiry(
    store: SessionStore, idem: IdempotencyStore
) -> None:
    sid = await open_session(store, idem)
    ok = await h.verify_session(VerifySession(session_id=sid, user_id=ALICE), store, POLICY, T0)
    assert ok.user_id == ALICE
    with pytest.raises(SessionNotFound):
        await h.verify_session(VerifySession(session_id=sid, user_id=BOB), store, POLICY, T0)
    with pytest.raises(SessionNotFound):
        await h.verify_session(VerifySession(session_id="d" * 32, user_id=ALICE), store, POLICY, T0)
    idle = T0 + POLICY.idle_timeout
    with pytest.raises(SessionExpired):
        await h.verify_session(VerifySession(session_id=sid, user_id=ALICE), store, POLICY, idle)
    session, _ = await store.require(sid)
    assert session.state is SessionState.EXPIRED


async def test_verify_touches_at_most_once_per_interval(
    store: SessionStore, idem: IdempotencyStore
) -> None:
    sid = await open_session(store, idem)
    _, rev0 = await store.require(sid)
    soon = T0 + timedelta(seconds=10)
    await h.verify_session(VerifySession(session_id=sid, user_id=ALICE), store, POLICY, soon)
    _, rev1 = await store.require(sid)
    assert rev1 == rev0
    later = T0 + timedelta(minutes=20)
    reply = await h.verify_session(
        VerifySession(session_id=sid, user_id=ALICE), store, POLICY, later
    )
    assert reply.expires_at == later + POLICY.idle_timeout
    session, rev2 = await store.require(sid)
    assert rev2 > rev1
    assert session.last_seen_at == later


async def test_activity_never_extends_past_the_absolute_lifetime(
    store: SessionStore, idem: IdempotencyStore
) -> None:
    sid = await open_session(store, idem)
    now = T0
    while now < T0 + POLICY.max_lifetime - timedelta(minutes=1):
        now += timedelta(minutes=20)
        if now >= T0 + POLICY.max_lifetime:
            break
        jti = (await store.require(sid))[0].jti
        assert jti is not None
        reply = await h.refresh_session(
            RefreshSession(session_id=sid, user_id=ALICE, jti=jti), store, POLICY, now
        )
        assert reply.session.expires_at <= T0 + POLICY.max_lifetime
    with pytest.raises(SessionExpired):
        await h.verify_session(
            VerifySession(session_id=sid, user_id=ALICE), store, POLICY, T0 + POLICY.max_lifetime
        )


async def test_revoke_is_final_and_idempotent(store: SessionStore, idem: IdempotencyStore) -> None:
    sid = await open_session(store, idem)
    with pytest.raises(SessionNotFound):
        await h.revoke_session(RevokeSession(session_id=sid, user_id=BOB), store, T0)
    first = await h.revoke_session(
        RevokeSession(session_id=sid, user_id=ALICE, reason="logout"), store, T0
    )
    assert first.session.state is SessionState.REVOKED
    assert first.session.revoked_reason == "logout"
    again = await h.revoke_session(RevokeSession(session_id=sid), store, T0 + timedelta(seconds=1))
    assert again.session.revoked_at == T0
    with pytest.raises(SessionRevoked):
        await h.verify_session(VerifySession(session_id=sid, user_id=ALICE), store, POLICY, T0)
    with pytest.raises(SessionRevoked):
        await h.refresh_session(
            RefreshSession(session_id=sid, user_id=ALICE, jti=first.session.jti or ""),
            store,
            POLICY,
            T0,
        )


async def test_get_and_list_respect_ownership(store: SessionStore, idem: IdempotencyStore) -> None:
    a1 = await open_session(store, idem)
    a2 = await open_session(store, idem)
    b1 = await open_session(store, idem, user=BOB)
    await h.revoke_session(RevokeSession(session_id=a2), store, T0)
    got = await h.get_session(GetSession(session_id=a1, user_id=ALICE), store, T0)
    assert got.session.session_id == a1
    with pytest.raises(SessionNotFound):
        await h.get_session(GetSession(session_id=b1, user_id=ALICE), store, T0)
    live = await h.list_sessions(ListSessions(user_id=ALICE), store, T0)
    assert [s.session_id for s in live.sessions] == [a1]
    every = await h.list_sessions(ListSessions(user_id=ALICE, include_inactive=True), store, T0)
    assert {s.session_id for s in every.sessions} == {a1, a2}
    by_name = await h.list_sessions(ListSessions(username="UB"), store, T0)
    assert [s.session_id for s in by_name.sessions] == [b1]


async def test_revoke_everywhere_else(store: SessionStore, idem: IdempotencyStore) -> None:
    keep = await open_session(store, idem)
    others = {await open_session(store, idem) for _ in range(3)}
    bob = await open_session(store, idem, user=BOB)
    reply = await h.revoke_user_sessions(
        RevokeUserSessions(user_id=ALICE, except_session_id=keep), store, T0
    )
    assert set(reply.revoked) == others
    live = await h.list_sessions(ListSessions(), store, T0)
    assert {s.session_id for s in live.sessions} == {keep, bob}


async def test_mutate_gives_up_with_a_typed_conflict(
    store: SessionStore, idem: IdempotencyStore
) -> None:
    sid = await open_session(store, idem)
    session, _ = await store.require(sid)
    bucket = store._bucket

    def change(s: object) -> object:
        return session.model_copy(update={"username": "changed"})

    async def race(*args: object) -> int:
        current = await bucket.get(sid)
        assert current is not None
        await MemoryBucket.update(bucket, sid, current.value, current.revision)  # type: ignore[arg-type]
        return await MemoryBucket.update(bucket, sid, b"x", current.revision)  # type: ignore[arg-type]

    bucket.update = race  # type: ignore[method-assign]
    with pytest.raises(WriteConflict):
        await store.mutate(sid, change)  # type: ignore[arg-type]


async def test_refresh_rotates_the_token_id_and_refuses_the_old_one(
    store: SessionStore, idem: IdempotencyStore
) -> None:
    sid = await open_session(store, idem)
    old = (await store.require(sid))[0].jti
    assert old is not None
    reply = await h.refresh_session(
        RefreshSession(session_id=sid, user_id=ALICE, jti=old), store, POLICY, T0
    )
    new = reply.session.jti
    assert new is not None
    assert new != old
    await h.verify_session(VerifySession(session_id=sid, user_id=ALICE, jti=new), store, POLICY, T0)
    with pytest.raises(TokenInvalid):
        await h.verify_session(
            VerifySession(session_id=sid, user_id=ALICE, jti=old), store, POLICY, T0
        )
    # Without a jti (the gate's periodic re-check) only the session is judged.
    await h.verify_session(VerifySession(session_id=sid, user_id=ALICE), store, POLICY, T0)


async def test_refresh_with_a_superseded_token_revokes_the_session(
    store: SessionStore, idem: IdempotencyStore
) -> None:
    sid = await open_session(store, idem)
    old = (await store.require(sid))[0].jti or ""
    new = (
        await h.refresh_session(
            RefreshSession(session_id=sid, user_id=ALICE, jti=old), store, POLICY, T0
        )
    ).session.jti
    with pytest.raises(SessionRevoked):
        await h.refresh_session(
            RefreshSession(session_id=sid, user_id=ALICE, jti=old), store, POLICY, T0
        )
    session, _ = await store.require(sid)
    assert session.state is SessionState.REVOKED
    assert session.revoked_reason == "refresh token reused"
    with pytest.raises(SessionRevoked):
        await h.verify_session(
            VerifySession(session_id=sid, user_id=ALICE, jti=new), store, POLICY, T0
        )


async def test_a_session_from_before_rotation_accepts_any_token_until_refreshed(
    store: SessionStore, idem: IdempotencyStore
) -> None:
    sid = await open_session(store, idem)
    stored, rev = await store.require(sid)
    await store.replace(stored.model_copy(update={"jti": None}), rev)
    anyone = "e" * 32
    await h.verify_session(
        VerifySession(session_id=sid, user_id=ALICE, jti=anyone), store, POLICY, T0
    )
    new = (
        await h.refresh_session(
            RefreshSession(session_id=sid, user_id=ALICE, jti=anyone), store, POLICY, T0
        )
    ).session.jti
    assert new is not None
    assert new != anyone
    with pytest.raises(TokenInvalid):
        await h.verify_session(
            VerifySession(session_id=sid, user_id=ALICE, jti=anyone), store, POLICY, T0
        )


async def test_creating_past_the_cap_evicts_the_oldest_live_sessions(
    store: SessionStore, idem: IdempotencyStore
) -> None:
    capped = h.SessionPolicy(
        POLICY.idle_timeout, POLICY.max_lifetime, POLICY.touch_interval, max_per_user=3
    )

    async def create(user: str, at: datetime) -> str:
        made = await h.create_session(
            CreateSession(user_id=user, username="u"), store, idem, capped, at
        )
        return made.session.session_id

    ids = [await create(ALICE, T0 + timedelta(seconds=i)) for i in range(3)]
    bob = await create(BOB, T0)
    await h.revoke_session(RevokeSession(session_id=ids[1]), store, T0)
    # A revoked session does not count: the fourth create still fits.
    ids.append(await create(ALICE, T0 + timedelta(seconds=3)))
    ids.append(await create(ALICE, T0 + timedelta(seconds=4)))
    live = await h.list_sessions(ListSessions(user_id=ALICE), store, T0 + timedelta(seconds=5))
    assert [s.session_id for s in live.sessions] == [ids[2], ids[3], ids[4]]
    evicted, _ = await store.require(ids[0])
    assert evicted.state is SessionState.REVOKED
    assert evicted.revoked_reason == "evicted: too many sessions"
    assert (await store.require(bob))[0].state is SessionState.ACTIVE
