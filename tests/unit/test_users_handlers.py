"""User handlers over an in-memory bucket: argon2 hashes, uniform failures, removal revokes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pydantic import SecretStr

from intents import (
    AuthenticateUser,
    AuthenticationFailed,
    CreateSession,
    CreateUser,
    ListSessions,
    ListUsers,
    RemoveUser,
    UserExists,
    UserNotFound,
)
from runtime_worker import sessions as sh
from runtime_worker import users as h
from runtime_worker.attempts import LoginAttempts, Slowdown
from runtime_worker.kv import MemoryBucket
from runtime_worker.passwords import Passwords
from runtime_worker.store import IdempotencyStore, SessionStore, UserStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = sh.SessionPolicy(timedelta(minutes=5), timedelta(hours=1), timedelta(seconds=60))


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    # Cheap argon2 parameters: these tests are about behaviour, not cost.
    return Passwords(PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),)))


@pytest.fixture
def users() -> UserStore:
    return UserStore(MemoryBucket())


@pytest.fixture
def attempts() -> LoginAttempts:
    return LoginAttempts(MemoryBucket(), limit=100, window=timedelta(minutes=1))


def secret(value: str) -> SecretStr:
    return SecretStr(value)


async def test_create_stores_an_argon2_hash_not_the_password(
    users: UserStore, passwords: Passwords
) -> None:
    reply = await h.create_user(
        CreateUser(username="Alice", password=secret("pw1")), users, passwords, T0
    )
    record, _ = await users.get("alice") or pytest.fail("not stored")
    assert record.id == reply.user.id
    assert record.password_hash.startswith("$argon2id$")
    assert "pw1" not in record.model_dump_json()
    with pytest.raises(UserExists):
        await h.create_user(
            CreateUser(username="ALICE", password=secret("x")), users, passwords, T0
        )


async def test_authentication_failures_are_indistinguishable(
    users: UserStore, passwords: Passwords, attempts: LoginAttempts
) -> None:
    await h.create_user(
        CreateUser(username="alice", password=secret("right")), users, passwords, T0
    )
    ok = await h.authenticate_user(
        AuthenticateUser(username="alice", password=secret("right")), users, passwords, attempts, T0
    )
    assert ok.user.username == "alice"
    failures = []
    for name, pw in [("alice", "wrong"), ("nobody", "right"), ("bad name!", "x")]:
        with pytest.raises(AuthenticationFailed) as caught:
            await h.authenticate_user(
                AuthenticateUser(username=name, password=secret(pw)),
                users,
                passwords,
                attempts,
                T0,
            )
        failures.append((caught.value.code, caught.value.message))
    assert len(set(failures)) == 1


async def test_list_and_remove_revokes_sessions(
    users: UserStore, passwords: Passwords, attempts: LoginAttempts
) -> None:
    sessions = SessionStore(MemoryBucket(), MemoryBucket())
    idem = IdempotencyStore(MemoryBucket())
    bob = (
        await h.create_user(CreateUser(username="bob", password=secret("p")), users, passwords, T0)
    ).user
    await h.create_user(CreateUser(username="amy", password=secret("p")), users, passwords, T0)
    listed = await h.list_users(ListUsers(), users)
    assert [u.username for u in listed.users] == ["amy", "bob"]
    sid = (
        await sh.create_session(
            CreateSession(user_id=bob.id, username="bob"), sessions, idem, POLICY, T0
        )
    ).session.session_id
    removed = await h.remove_user(RemoveUser(username="Bob"), users, sessions, T0)
    assert removed.revoked_sessions == [sid]
    assert (await sh.list_sessions(ListSessions(user_id=bob.id), sessions, T0)).sessions == []
    with pytest.raises(UserNotFound):
        await h.remove_user(RemoveUser(username="bob"), users, sessions, T0)
    with pytest.raises(AuthenticationFailed):
        await h.authenticate_user(
            AuthenticateUser(username="bob", password=secret("p")), users, passwords, attempts, T0
        )


async def test_failures_on_a_name_slow_both_answers_and_the_right_password_still_passes(
    users: UserStore, passwords: Passwords
) -> None:
    attempts = LoginAttempts(
        MemoryBucket(),
        limit=100,
        window=timedelta(minutes=1),
        slowdown=Slowdown(after=1, max_delay=timedelta(milliseconds=50)),
    )
    await h.create_user(
        CreateUser(username="alice", password=secret("right")), users, passwords, T0
    )
    wrong = AuthenticateUser(username="alice", password=secret("wrong"), client_address="a")
    right = AuthenticateUser(username="alice", password=secret("right"), client_address="b")
    with pytest.raises(AuthenticationFailed):
        await h.authenticate_user(wrong, users, passwords, attempts, T0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AuthenticationFailed):
        await h.authenticate_user(wrong, users, passwords, attempts, T0)
    assert loop.time() - started >= 0.05
    started = loop.time()
    ok = await h.authenticate_user(right, users, passwords, attempts, T0)
    assert ok.user.username == "alice"
    assert loop.time() - started >= 0.05  # a fast success would tell a guesser it was right
    # Never more than half of what is left of the caller's deadline.
    hurried = right.model_copy(update={"deadline": T0 + timedelta(milliseconds=10)})
    started = loop.time()
    await h.authenticate_user(hurried, users, passwords, attempts, T0)
    assert loop.time() - started < 0.05
