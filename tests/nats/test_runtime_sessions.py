"""Every session intent end to end: real runtime, real nats-server, real JetStream KV."""

from __future__ import annotations

import asyncio
import json

import pytest
from nats.aio.client import Client

from bus import names
from bus.settings import Settings
from intents import (
    CreateSession,
    CreateSessionReply,
    CreateUser,
    CreateUserReply,
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
    SessionNotFound,
    SessionRevoked,
    SessionState,
    TokenInvalid,
    UserInfo,
    VerifySession,
    VerifySessionReply,
)
from intents.request import ask
from runtime_worker.app import Worker
from runtime_worker.kv import NatsBucket
from tests.nats.conftest import FakeClock

T = 2.0


async def make_user(nc: Client, name: str = "alice") -> UserInfo:
    reply = await ask(nc, CreateUser(username=name, password="pw"), T)  # type: ignore[arg-type]
    assert isinstance(reply, CreateUserReply)
    return reply.user


async def make_session(nc: Client, user: UserInfo, key: str | None = None) -> CreateSessionReply:
    reply = await ask(
        nc, CreateSession(user_id=user.id, username=user.username, idempotency_key=key), T
    )
    assert isinstance(reply, CreateSessionReply)
    return reply


async def test_session_lifecycle_end_to_end(nc: Client, worker: Worker) -> None:
    alice = await make_user(nc)
    created = await make_session(nc, alice)
    sid = created.session.session_id
    assert created.created

    # The session is in KV under its id, as readable JSON (what `nats kv get sessions <id>` shows).
    kv = await nc.jetstream().key_value(names.SESSIONS_BUCKET)
    stored = json.loads((await kv.get(sid)).value)
    assert stored["session_id"] == sid
    assert stored["user_id"] == alice.id
    assert stored["state"] == "active"

    verified = await ask(nc, VerifySession(session_id=sid, user_id=alice.id), T)
    assert isinstance(verified, VerifySessionReply)
    assert verified.username == "alice"

    got = await ask(nc, GetSession(session_id=sid, user_id=alice.id), T)
    assert isinstance(got, GetSessionReply)
    assert got.session.session_id == sid

    listed = await ask(nc, ListSessions(user_id=alice.id), T)
    assert isinstance(listed, ListSessionsReply)
    assert [s.session_id for s in listed.sessions] == [sid]

    assert stored["jti"] == created.session.jti
    refreshed = await ask(
        nc, RefreshSession(session_id=sid, user_id=alice.id, jti=created.session.jti or ""), T
    )
    assert isinstance(refreshed, RefreshSessionReply)
    assert refreshed.session.expires_at >= created.session.expires_at
    assert refreshed.session.jti != created.session.jti

    revoked = await ask(nc, RevokeSession(session_id=sid, user_id=alice.id, reason="logout"), T)
    assert isinstance(revoked, RevokeSessionReply)
    assert revoked.session.state is SessionState.REVOKED
    with pytest.raises(SessionRevoked):
        await ask(nc, VerifySession(session_id=sid, user_id=alice.id), T)
    assert json.loads((await kv.get(sid)).value)["state"] == "revoked"


async def test_other_users_sessions_look_absent(nc: Client, worker: Worker) -> None:
    alice, bob = await make_user(nc, "alice"), await make_user(nc, "bob")
    session = (await make_session(nc, alice)).session
    sid = session.session_id
    for intent in (
        VerifySession(session_id=sid, user_id=bob.id),
        GetSession(session_id=sid, user_id=bob.id),
        RefreshSession(session_id=sid, user_id=bob.id, jti=session.jti or ""),
        RevokeSession(session_id=sid, user_id=bob.id),
    ):
        with pytest.raises(SessionNotFound):
            await ask(nc, intent, T)
    await ask(nc, VerifySession(session_id=sid, user_id=alice.id), T)


async def test_idempotent_create(nc: Client, worker: Worker) -> None:
    alice = await make_user(nc)
    first = await make_session(nc, alice, key="same")
    replies = await asyncio.gather(*(make_session(nc, alice, key="same") for _ in range(5)))
    assert {r.session.session_id for r in replies} == {first.session.session_id}
    assert not any(r.created for r in replies)
    other = await make_session(nc, alice, key="other")
    assert other.session.session_id != first.session.session_id


async def test_concurrent_creates_never_collide(nc: Client, worker: Worker) -> None:
    alice = await make_user(nc)
    replies = await asyncio.gather(*(make_session(nc, alice) for _ in range(30)))
    assert len({r.session.session_id for r in replies}) == 30


async def test_kv_create_refuses_to_overwrite_a_session(nc: Client, worker: Worker) -> None:
    from runtime_worker.kv import KeyExists, NatsBucket
    from runtime_worker.store import SessionStore

    alice = await make_user(nc)
    session = (await make_session(nc, alice)).session
    js = nc.jetstream()
    store = SessionStore(
        NatsBucket(await js.key_value(names.SESSIONS_BUCKET)),
        NatsBucket(await js.key_value(names.SESSIONS_BY_USER_BUCKET)),
    )
    forged = session.model_copy(update={"user_id": "f" * 32})
    with pytest.raises(KeyExists):
        await store.create(forged)
    stored, _ = await store.require(session.session_id)
    assert stored.user_id == alice.id
    # The forger's index entry was written first, but it does not make the session theirs.
    assert await store.of_user("f" * 32) == []
    assert [s.session_id for s in await store.of_user(alice.id)] == [session.session_id]


async def test_concurrent_revoke_and_refresh_end_revoked(nc: Client, start: object) -> None:
    # Two workers so the writes really race through CAS on different connections.
    await start()  # type: ignore[operator]
    await start()  # type: ignore[operator]
    alice = await make_user(nc)
    for _ in range(5):
        session = (await make_session(nc, alice)).session
        sid = session.session_id
        # All with the current token: the first refresh rotates it, the others present a
        # superseded one and revoke (or find the session revoked already).
        intents = [
            RefreshSession(session_id=sid, user_id=alice.id, jti=session.jti or "")
            for _ in range(6)
        ]
        intents.insert(3, RevokeSession(session_id=sid, user_id=alice.id))
        results = await asyncio.gather(*(ask(nc, i, T) for i in intents), return_exceptions=True)
        for result in results:
            assert isinstance(result, (RefreshSessionReply, RevokeSessionReply, SessionRevoked)), (
                result
            )
        final = await ask(nc, GetSession(session_id=sid), T)
        assert isinstance(final, GetSessionReply)
        assert final.session.state is SessionState.REVOKED
        with pytest.raises(SessionRevoked):
            await ask(nc, VerifySession(session_id=sid, user_id=alice.id), T)


async def test_idle_expiry_and_absolute_lifetime(
    nc: Client, worker: Worker, clock: FakeClock
) -> None:
    alice = await make_user(nc)
    idle_sid = (await make_session(nc, alice)).session.session_id
    busy = await make_session(nc, alice)
    busy_sid = busy.session.session_id
    # 20 minutes in: refresh one session, not the other.
    clock.advance(20 * 60)
    await ask(
        nc, RefreshSession(session_id=busy_sid, user_id=alice.id, jti=busy.session.jti or ""), T
    )
    clock.advance(15 * 60)  # 35 min: past the 30 min idle timeout of the first only.
    with pytest.raises(SessionExpired):
        await ask(nc, VerifySession(session_id=idle_sid, user_id=alice.id), T)
    await ask(nc, VerifySession(session_id=busy_sid, user_id=alice.id), T)
    got = await ask(nc, GetSession(session_id=idle_sid), T)
    assert isinstance(got, GetSessionReply)
    assert got.session.state is SessionState.EXPIRED
    listed = await ask(nc, ListSessions(user_id=alice.id), T)
    assert isinstance(listed, ListSessionsReply)
    assert [s.session_id for s in listed.sessions] == [busy_sid]
    # Keep it busy right up to its 12 h lifetime: activity cannot extend that.
    while clock.now < busy.session.absolute_expires_at:
        clock.advance(25 * 60)
        if clock.now >= busy.session.absolute_expires_at:
            break
        await ask(nc, VerifySession(session_id=busy_sid, user_id=alice.id), T)
    with pytest.raises(SessionExpired):
        await ask(nc, VerifySession(session_id=busy_sid, user_id=alice.id), T)


async def test_revoke_all_but_one(nc: Client, worker: Worker) -> None:
    alice = await make_user(nc)
    keep = (await make_session(nc, alice)).session.session_id
    others = {(await make_session(nc, alice)).session.session_id for _ in range(3)}
    reply = await ask(nc, RevokeUserSessions(user_id=alice.id, except_session_id=keep), T)
    assert isinstance(reply, RevokeUserSessionsReply)
    assert set(reply.revoked) == others
    listed = await ask(nc, ListSessions(user_id=alice.id), T)
    assert isinstance(listed, ListSessionsReply)
    assert [s.session_id for s in listed.sessions] == [keep]


async def test_a_users_sessions_are_found_among_many_others(nc: Client, worker: Worker) -> None:
    alice, bob = await make_user(nc, "alice"), await make_user(nc, "bob")
    carol = await make_user(nc, "carol")  # no sessions at all
    mine = {(await make_session(nc, alice)).session.session_id for _ in range(3)}
    await asyncio.gather(*(make_session(nc, bob) for _ in range(40)))
    listed = await ask(nc, ListSessions(user_id=alice.id), T)
    assert isinstance(listed, ListSessionsReply)
    assert {s.session_id for s in listed.sessions} == mine
    none = await ask(nc, ListSessions(user_id=carol.id), T)
    assert isinstance(none, ListSessionsReply)
    assert none.sessions == []
    # Read through our store, not nats-py's ``keys()``: its watcher can report the end before an
    # entry already in flight (NoKeysError on a bucket that has keys).
    index = NatsBucket(await nc.jetstream().key_value(names.SESSIONS_BY_USER_BUCKET))
    assert {e.key.split(".")[1] for e in await index.entries(f"{alice.id}.>")} == mine


async def test_listing_a_users_sessions_leaves_no_consumer_behind(
    nc: Client, worker: Worker
) -> None:
    # One consumer per listing outlived the listing: at a few hundred listings a second the
    # stream refused more ("maximum consumers limit reached") and GET /api/sessions was a 500.
    alice = await make_user(nc, "alice")
    mine = {(await make_session(nc, alice)).session.session_id for _ in range(3)}
    for _ in range(20):
        listed = await ask(nc, ListSessions(user_id=alice.id), T)
        assert isinstance(listed, ListSessionsReply)
        assert {s.session_id for s in listed.sessions} == mine
    index = await nc.jetstream().stream_info(names.kv_stream(names.SESSIONS_BY_USER_BUCKET))
    assert index.state.consumer_count == 0


async def test_sessions_stored_before_the_index_are_indexed_at_start(
    nc: Client, start: object
) -> None:
    first = await start()  # type: ignore[operator]
    alice = await make_user(nc)
    template = (await make_session(nc, alice)).session
    await first.stop()
    # As a version without the index left it: a session stored, and no index entry for it.
    old = "0" * 31 + "1"
    stored = await nc.jetstream().key_value(names.SESSIONS_BUCKET)
    await stored.create(
        old, template.model_copy(update={"session_id": old}).model_dump_json().encode()
    )
    await start()  # type: ignore[operator]
    newer = (await make_session(nc, alice)).session.session_id
    listed = await ask(nc, ListSessions(user_id=alice.id), T)
    assert isinstance(listed, ListSessionsReply)
    assert {s.session_id for s in listed.sessions} == {template.session_id, old, newer}
    revoked = await ask(nc, RevokeUserSessions(user_id=alice.id), T)
    assert isinstance(revoked, RevokeUserSessionsReply)
    assert set(revoked.revoked) == {template.session_id, old, newer}


async def test_refresh_rotates_and_a_superseded_token_revokes(nc: Client, worker: Worker) -> None:
    alice = await make_user(nc)
    created = (await make_session(nc, alice)).session
    sid, first = created.session_id, created.jti or ""
    refreshed = await ask(nc, RefreshSession(session_id=sid, user_id=alice.id, jti=first), T)
    assert isinstance(refreshed, RefreshSessionReply)
    second = refreshed.session.jti or ""
    await ask(nc, VerifySession(session_id=sid, user_id=alice.id, jti=second), T)
    with pytest.raises(TokenInvalid):
        await ask(nc, VerifySession(session_id=sid, user_id=alice.id, jti=first), T)
    # The first token again, at refresh: a copy is in other hands. The session ends.
    with pytest.raises(SessionRevoked):
        await ask(nc, RefreshSession(session_id=sid, user_id=alice.id, jti=first), T)
    with pytest.raises(SessionRevoked):
        await ask(nc, VerifySession(session_id=sid, user_id=alice.id, jti=second), T)
    got = await ask(nc, GetSession(session_id=sid), T)
    assert isinstance(got, GetSessionReply)
    assert got.session.state is SessionState.REVOKED
    assert got.session.revoked_reason == "refresh token reused"


async def test_a_session_stored_before_rotation_verifies_until_refreshed(
    nc: Client, worker: Worker
) -> None:
    alice = await make_user(nc)
    template = (await make_session(nc, alice)).session
    # As a version without rotation stored it: no ``jti`` key at all.
    legacy = json.loads(template.model_dump_json())
    del legacy["jti"]
    legacy["session_id"] = sid = "0" * 31 + "2"
    js = nc.jetstream()
    await (await js.key_value(names.SESSIONS_BY_USER_BUCKET)).create(
        f"{alice.id}.{sid}", sid.encode()
    )
    await (await js.key_value(names.SESSIONS_BUCKET)).create(sid, json.dumps(legacy).encode())
    old_token = "e" * 32
    await ask(nc, VerifySession(session_id=sid, user_id=alice.id, jti=old_token), T)
    refreshed = await ask(nc, RefreshSession(session_id=sid, user_id=alice.id, jti=old_token), T)
    assert isinstance(refreshed, RefreshSessionReply)
    assert refreshed.session.jti not in (None, old_token)
    with pytest.raises(TokenInvalid):
        await ask(nc, VerifySession(session_id=sid, user_id=alice.id, jti=old_token), T)


async def test_creating_past_the_cap_revokes_the_oldest(
    nc: Client, start: object, settings: Settings, clock: FakeClock
) -> None:
    await start(settings=settings.model_copy(update={"max_sessions_per_user": 3}))  # type: ignore[operator]
    alice, bob = await make_user(nc, "alice"), await make_user(nc, "bob")
    bobs = (await make_session(nc, bob)).session.session_id
    mine = []
    for _ in range(5):
        clock.advance(1)
        mine.append((await make_session(nc, alice)).session.session_id)
    listed = await ask(nc, ListSessions(user_id=alice.id), T)
    assert isinstance(listed, ListSessionsReply)
    assert [s.session_id for s in listed.sessions] == mine[2:]
    for evicted in mine[:2]:
        got = await ask(nc, GetSession(session_id=evicted), T)
        assert isinstance(got, GetSessionReply)
        assert got.session.state is SessionState.REVOKED
        assert got.session.revoked_reason == "evicted: too many sessions"
    await ask(nc, VerifySession(session_id=bobs, user_id=bob.id), T)


async def test_audit_keeps_writes_and_failures_but_not_successful_reads(
    nc: Client, worker: Worker
) -> None:
    alice = await make_user(nc, "audrey")
    created = await make_session(nc, alice)
    sid = created.session.session_id
    for _ in range(5):
        await ask(nc, VerifySession(session_id=sid, user_id=alice.id), T)
    await ask(nc, GetSession(session_id=sid, user_id=alice.id), T)
    await ask(nc, ListSessions(user_id=alice.id), T)
    with pytest.raises(SessionNotFound):
        await ask(nc, VerifySession(session_id="0" * 32, user_id=alice.id), T)
    await ask(nc, RevokeSession(session_id=sid, user_id=alice.id), T)
    js = nc.jetstream()
    info = await js.stream_info(names.INTENTS_STREAM)
    sub = await js.subscribe(names.AUDIT_ALL, stream=names.INTENTS_STREAM, ordered_consumer=True)
    records = [await sub.next_msg(timeout=2) for _ in range(info.state.messages)]
    await sub.unsubscribe()
    seen = [(m.subject, (m.headers or {})[names.OUTCOME_HEADER]) for m in records]
    assert (names.audit_subject(names.SESSION_CREATE), "ok") in seen
    assert (names.audit_subject(names.SESSION_REVOKE), "ok") in seen
    assert (names.audit_subject(names.SESSION_VERIFY), "session_not_found") in seen
    reads = {names.SESSION_VERIFY, names.SESSION_GET, names.SESSION_LIST}
    assert not [s for s, code in seen if code == "ok" and s in map(names.audit_subject, reads)]
