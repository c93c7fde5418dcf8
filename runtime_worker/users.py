"""User handlers: authenticate, create, list, remove."""

from __future__ import annotations

import re
from datetime import datetime

from intents import (
    AuthenticateUser,
    AuthenticateUserReply,
    AuthenticationFailed,
    CreateUser,
    CreateUserReply,
    ListUsers,
    ListUsersReply,
    RemoveUser,
    RemoveUserReply,
    UserExists,
    UserNotFound,
    WriteConflict,
    new_id,
)
from runtime_worker.attempts import LoginAttempts
from runtime_worker.kv import KeyExists, RevisionMismatch
from runtime_worker.passwords import Passwords
from runtime_worker.sessions import revoke_all
from runtime_worker.store import SessionStore, UserRecord, UserStore

# Only names that could have been created can exist; anything else skips the store entirely.
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


async def _find(users: UserStore, username: str) -> tuple[UserRecord, int] | None:
    if not _VALID_NAME.match(username):
        return None
    return await users.get(username)


async def authenticate_user(
    intent: AuthenticateUser,
    users: UserStore,
    passwords: Passwords,
    attempts: LoginAttempts,
    now: datetime,
) -> AuthenticateUserReply:
    """Check the password; an unknown user costs the same time and gets the same error.

    Each attempt is counted first, per username across every worker: over the limit it is
    ``RateLimited`` without a password check.
    """
    password = intent.password.get_secret_value()
    await attempts.count(intent.username, now)
    found = await _find(users, intent.username)
    if found is None:
        await passwords.verify_decoy(password)
        raise AuthenticationFailed()
    user, _ = found
    if not await passwords.verify(password, user.password_hash):
        raise AuthenticationFailed()
    await attempts.clear(intent.username)
    return AuthenticateUserReply(user=user.info())


async def create_user(
    intent: CreateUser, users: UserStore, passwords: Passwords, now: datetime
) -> CreateUserReply:
    """Add a user with an argon2 hash of the password; names are unique ignoring case."""
    record = UserRecord(
        id=new_id(),
        username=intent.username,
        password_hash=await passwords.hash(intent.password.get_secret_value()),
        created_at=now,
    )
    try:
        await users.create(record)
    except KeyExists as exc:
        raise UserExists(f"user {intent.username!r} already exists") from exc
    return CreateUserReply(user=record.info())


async def list_users(intent: ListUsers, users: UserStore) -> ListUsersReply:
    """Every user, by name."""
    records = sorted(await users.all(), key=lambda u: u.username.lower())
    return ListUsersReply(users=[u.info() for u in records])


async def remove_user(
    intent: RemoveUser, users: UserStore, sessions: SessionStore, now: datetime
) -> RemoveUserReply:
    """Remove the user, then revoke every session they still had."""
    found = await _find(users, intent.username)
    if found is None:
        raise UserNotFound(f"no user {intent.username!r}")
    user, revision = found
    try:
        await users.delete(user.username, revision)
    except RevisionMismatch as exc:
        raise WriteConflict("user changed while being removed; retry") from exc
    revoked = await revoke_all(sessions, user.id, now, reason="user removed")
    return RemoveUserReply(user=user.info(), revoked_sessions=revoked)
