"""Session intents: create, verify (the fast path), read, list, refresh, revoke.

Token rotation: a session records the ``jti`` of its one current token (``SessionInfo.jti``).
The runtime picks it when it creates or refreshes the session; the Experience Plane signs the
token with it. ``VerifySession`` with a ``jti`` refuses any other (``TokenInvalid``), and
``RefreshSession`` with a superseded one revokes the session (refresh-token reuse detection).
A session stored before rotation existed has no ``jti`` and accepts any until its first refresh.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from bus import names
from intents.base import Intent, Reply

SessionId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
UserId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
TokenId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class SessionState(StrEnum):
    """A session's life: active, then revoked or expired, never back."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class SessionInfo(BaseModel):
    """What callers may see of a session."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session_id: SessionId
    user_id: UserId
    username: str
    state: SessionState
    created_at: datetime
    expires_at: datetime
    absolute_expires_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    # The id of the session's current token; None only for sessions stored before rotation.
    jti: TokenId | None = None


class CreateSession(Intent):
    """Open a new session for an authenticated user; ``idempotency_key`` makes retries safe."""

    subject = names.SESSION_CREATE

    user_id: UserId
    username: str
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class CreateSessionReply(Reply):
    """The new (or, for a repeated idempotency key, the original) session; sign ``session.jti``.

    Creating a session beyond ``max_sessions_per_user`` revokes the user's oldest live ones.
    """

    session: SessionInfo
    created: bool


class VerifySession(Intent):
    """Confirm a session exists, is active, is not expired and belongs to ``user_id``.

    With ``jti`` (the presented token's), also that it is the session's current token: a token
    superseded by a refresh gets ``TokenInvalid``. Without it, only the session is checked.
    """

    subject = names.SESSION_VERIFY
    retry_safe = True
    reads_only = True

    session_id: SessionId
    user_id: UserId
    jti: TokenId | None = None


class VerifySessionReply(Reply):
    """The session is live until ``expires_at``."""

    session_id: SessionId
    user_id: UserId
    username: str
    expires_at: datetime
    absolute_expires_at: datetime


class GetSession(Intent):
    """Read one session; with ``user_id`` set, only if it is that user's."""

    subject = names.SESSION_GET
    retry_safe = True
    reads_only = True

    session_id: SessionId
    user_id: UserId | None = None


class GetSessionReply(Reply):
    """The session, in any state."""

    session: SessionInfo


class ListSessions(Intent):
    """List sessions, optionally of one user (by id or name), live ones unless asked otherwise."""

    subject = names.SESSION_LIST
    retry_safe = True
    reads_only = True

    user_id: UserId | None = None
    username: str | None = None
    include_inactive: bool = False


class ListSessionsReply(Reply):
    """Sessions, oldest first."""

    sessions: list[SessionInfo]


class RefreshSession(Intent):
    """Rotate a live session's token and extend its idle expiry (never past its lifetime).

    ``jti`` is the presented token's: if it is not the session's current one, the token was
    superseded, so someone holds a stale copy: the session is revoked and ``SessionRevoked``
    answered. Not retry-safe: a second delivery would present the jti the first one replaced.
    """

    subject = names.SESSION_REFRESH

    session_id: SessionId
    user_id: UserId
    jti: TokenId


class RefreshSessionReply(Reply):
    """The session with its new expiry and its new current token id (``session.jti``)."""

    session: SessionInfo


class RevokeSession(Intent):
    """End a session; with ``user_id`` set, only if it is that user's."""

    subject = names.SESSION_REVOKE
    retry_safe = True

    session_id: SessionId
    user_id: UserId | None = None
    reason: str = Field(default="revoked", max_length=200)


class RevokeSessionReply(Reply):
    """The session as revoked (revoking twice is not an error)."""

    session: SessionInfo


class RevokeUserSessions(Intent):
    """End every live session of a user, optionally sparing one (log out everywhere else)."""

    subject = names.SESSION_REVOKE_ALL

    user_id: UserId
    except_session_id: SessionId | None = None
    reason: str = Field(default="revoked", max_length=200)


class RevokeUserSessionsReply(Reply):
    """Ids of the sessions this intent revoked."""

    revoked: list[str]
