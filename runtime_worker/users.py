"""User handlers: authenticate, create, list, remove, set a password."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta

from intents import (
    AuthenticateUser,
    AuthenticateUserReply,
    AuthenticationFailed,
    CreateUser,
    CreateUserReply,
    InvalidIntent,
    ListUsers,
    ListUsersReply,
    RemoveUser,
    RemoveUserReply,
    SetPassword,
    SetPasswordReply,
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

    Each attempt is counted first, per (username, client address) across every worker: over
    that limit it is ``RateLimited`` without a password check. Failures on the name only delay
    the answer (at most half of what is left of the caller's deadline), success or not, so a
    stranger's guesses slow the user down but never lock them out.
    """
    password = intent.password.get_secret_value()
    delay = await attempts.begin(intent.username, intent.client_address, now)
    if intent.deadline is not None:
        delay = min(delay, max(timedelta(0), intent.deadline - now) / 2)
    loop = asyncio.get_running_loop()
    answer_at = loop.time() + delay.total_seconds()
    user = await _check(users, passwords, intent.username, password)
    if user is None:
        await attempts.failed(intent.username, now)
    else:
        await attempts.succeeded(intent.username, intent.client_address)
    # Success and failure wait alike: a fast answer must not tell a guesser it was right.
    await asyncio.sleep(max(0.0, answer_at - loop.time()))
    if user is None:
        raise AuthenticationFailed()
    return AuthenticateUserReply(user=user.info())


async def _check(
    users: UserStore, passwords: Passwords, username: str, password: str
) -> UserRecord | None:
    found = await _find(users, username)
    if found is None or found[0].external:
        # A user of an identity provider has no password here: answered like an unknown one.
        await passwords.verify_decoy(password)
        return None
    user, _ = found
    return user if await passwords.verify(password, user.password_hash) else None


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


async def set_password(
    intent: SetPassword,
    users: UserStore,
    passwords: Passwords,
    sessions: SessionStore,
    now: datetime,
) -> SetPasswordReply:
    """Store a hash of the new password, then revoke every session the user had.

    A reset is what an operator does when a password may be known to someone else, so whatever
    was opened with the old one ends with it (their sockets close with 4404).
    """
    found = await _find(users, intent.username)
    if found is None:
        raise UserNotFound(f"no user {intent.username!r}")
    user, revision = found
    if user.external:
        raise InvalidIntent(f"user {user.username!r} logs in through {user.issuer}; no password")
    password_hash = await passwords.hash(intent.password.get_secret_value())
    changed = user.model_copy(update={"password_hash": password_hash})
    try:
        await users.replace(changed, revision)
    except RevisionMismatch as exc:
        raise WriteConflict("user changed while its password was being set; retry") from exc
    revoked = await revoke_all(sessions, user.id, now, reason="password changed")
    return SetPasswordReply(user=changed.info(), revoked_sessions=revoked)
