"""Identity handlers: users of an OpenID provider, and the one-time handover of their sessions.

An external identity is the pair (issuer, subject), never a name or an email: the
``identities`` bucket maps a hash of the pair to the user made at its first login. Handover
codes are stored as hashes too, in the ``handovers`` bucket, and taken with a delete at the
revision that was read: of two takes of one code, across any number of workers, one wins.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from intents import (
    AuthenticateExternal,
    AuthenticateExternalReply,
    HandoverInvalid,
    StoreHandover,
    StoreHandoverReply,
    TakeHandover,
    TakeHandoverReply,
    WriteConflict,
    new_id,
)
from runtime_worker.kv import Bucket, KeyExists, RevisionMismatch
from runtime_worker.store import MAX_CAS_ATTEMPTS, UserRecord, UserStore

# How long a handover code works: the page trades it the moment it loads.
HANDOVER_CODE_TTL = timedelta(seconds=60)
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class Identity(BaseModel):
    """An external identity and the user it maps to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str
    subject: str
    user_id: str
    username: str


class Handover(BaseModel):
    """A session waiting for the browser that logged in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session_id: str
    user_id: str
    username: str
    jti: str | None
    expires_at: datetime
    code_expires_at: datetime


def identity_key(issuer: str, subject: str) -> str:
    """The bucket key of an identity: any characters may be in either part."""
    return hashlib.sha256(f"{issuer}\x00{subject}".encode()).hexdigest()


def handover_key(code: str) -> str:
    """The bucket key of a code: whoever reads the bucket cannot use what is in it."""
    return hashlib.sha256(code.encode()).hexdigest()


def username_candidates(intent: AuthenticateExternal) -> list[str]:
    """Names to try for a new external user, the provider's preferred one first.

    Then the same with a suffix from the identity, then with random ones: a local user of the
    same name is never taken over, the newcomer gets another name.
    """
    hints = [intent.preferred_username, (intent.email or "").split("@")[0], intent.name]
    base = "user"
    for hint in hints:
        name = _NOT_NAME.sub("-", hint or "").strip("-._")[:48]
        if name:
            base = name
            break
    stable = identity_key(intent.issuer, intent.sub)[:6]
    return [base, f"{base}-{stable}", *(f"{base}-{secrets.token_hex(4)}" for _ in range(4))]


async def _new_user(intent: AuthenticateExternal, users: UserStore, now: datetime) -> UserRecord:
    for name in username_candidates(intent):
        record = UserRecord(
            id=new_id(),
            username=name,
            password_hash="",
            created_at=now,
            issuer=intent.issuer,
            subject=intent.sub,
        )
        try:
            await users.create(record)
        except KeyExists:
            continue
        return record
    raise WriteConflict("no free user name for this identity; retry")


async def _drop(users: UserStore, user: UserRecord) -> None:
    """Remove a user made for a race this worker lost."""
    found = await users.get(user.username)
    if found is not None and found[0].id == user.id:
        await users.delete(user.username, found[1])


async def authenticate_external(
    intent: AuthenticateExternal, users: UserStore, identities: Bucket, now: datetime
) -> AuthenticateExternalReply:
    """The user of ``(issuer, sub)``, made at the first login (and again if it was removed)."""
    key = identity_key(intent.issuer, intent.sub)
    for _ in range(MAX_CAS_ATTEMPTS):
        entry = await identities.get(key)
        if entry is not None:
            known = Identity.model_validate_json(entry.value)
            found = await users.get(known.username)
            if found is not None and found[0].id == known.user_id:
                return AuthenticateExternalReply(user=found[0].info(), created=False)
        user = await _new_user(intent, users, now)
        record = Identity(
            issuer=intent.issuer, subject=intent.sub, user_id=user.id, username=user.username
        )
        try:
            if entry is None:
                await identities.create(key, record.model_dump_json().encode())
            else:
                await identities.update(key, record.model_dump_json().encode(), entry.revision)
        except (KeyExists, RevisionMismatch):
            # A first login of the same identity on another worker won: use its user.
            await _drop(users, user)
            continue
        return AuthenticateExternalReply(user=user.info(), created=True)
    raise WriteConflict("identity kept changing; retry")


async def store_handover(
    intent: StoreHandover, handovers: Bucket, now: datetime
) -> StoreHandoverReply:
    """Park the session under a new random code (256 bits); only its hash is stored."""
    code = secrets.token_urlsafe(32)
    handover = Handover(
        session_id=intent.session_id,
        user_id=intent.user_id,
        username=intent.username,
        jti=intent.jti,
        expires_at=intent.expires_at,
        code_expires_at=now + HANDOVER_CODE_TTL,
    )
    await handovers.create(handover_key(code), handover.model_dump_json().encode())
    return StoreHandoverReply(code=code, expires_at=handover.code_expires_at)


async def take_handover(
    intent: TakeHandover, handovers: Bucket, now: datetime
) -> TakeHandoverReply:
    """The session of a code, once; unknown, taken and expired codes fail alike."""
    key = handover_key(intent.code.get_secret_value())
    entry = await handovers.get(key)
    if entry is None:
        raise HandoverInvalid()
    try:
        await handovers.delete(key, entry.revision)
    except RevisionMismatch as exc:
        raise HandoverInvalid() from exc
    handover = Handover.model_validate_json(entry.value)
    if handover.code_expires_at < now:
        raise HandoverInvalid()
    return TakeHandoverReply(
        session_id=handover.session_id,
        user_id=handover.user_id,
        username=handover.username,
        jti=handover.jti,
        expires_at=handover.expires_at,
    )
