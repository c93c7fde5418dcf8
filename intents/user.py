"""User intents: authenticate, create, list, remove, set a password.

Intents that carry a password travel on ``credentials.*`` subjects, outside ``intents.>``, so an
operator's ``nats sub 'intents.>'`` never shows a password; their audit record is redacted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bus import names
from intents.base import Intent, Reply

Username = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Password = Annotated[SecretStr, Field(min_length=1, max_length=1024)]


class UserInfo(BaseModel):
    """What callers may see of a user (never the password hash)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    username: str
    created_at: datetime
    # The OpenID provider the user logs in through; None for a local user (with a password).
    issuer: str | None = None


class AuthenticateUser(Intent):
    """Check a username and password; the answer for an unknown user and a wrong password match."""

    subject = names.USER_AUTHENTICATE

    username: str = Field(min_length=1, max_length=256)
    password: Password
    # Where the attempt came from, as the Experience Plane sees it: attempts are limited per
    # (username, address), so a stranger's guesses use up only the stranger's own attempts.
    client_address: str = Field(default="", max_length=256)


class AuthenticateUserReply(Reply):
    """The authenticated user."""

    user: UserInfo


class CreateUser(Intent):
    """Add a user; fails with ``user_exists`` if the name is taken."""

    subject = names.USER_CREATE

    username: Username
    password: Password


class CreateUserReply(Reply):
    """The new user."""

    user: UserInfo


class ListUsers(Intent):
    """List every user."""

    subject = names.USER_LIST
    retry_safe = True
    reads_only = True


class ListUsersReply(Reply):
    """Users, by name."""

    users: list[UserInfo]


class RemoveUser(Intent):
    """Remove a user and revoke all of their sessions."""

    subject = names.USER_REMOVE

    username: str = Field(min_length=1, max_length=256)


class RemoveUserReply(Reply):
    """The removed user and the sessions that were revoked with it."""

    user: UserInfo
    revoked_sessions: list[str]


class SetPassword(Intent):
    """Give a user a new password and revoke all of their sessions (``symphainy users passwd``)."""

    subject = names.USER_PASSWD

    username: str = Field(min_length=1, max_length=256)
    password: Password


class SetPasswordReply(Reply):
    """The user whose password changed and the sessions that were revoked with the old one."""

    user: UserInfo
    revoked_sessions: list[str]
