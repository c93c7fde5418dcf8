"""Identity intents: logins through an OpenID provider.

The Experience Plane checks what the provider sent (experience/oidc.py) and asks the runtime to
map the identity to a user (``AuthenticateExternal``); after ``CreateSession`` it parks the new
session under a one-time code (``StoreHandover``) that the browser's page trades for its token
(``TakeHandover``, outside ``intents.>`` since the code is a credential).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, SecretStr

from bus import names
from intents.base import Intent, Reply
from intents.session import SessionId, TokenId, UserId
from intents.user import UserInfo

Claim = Annotated[str, Field(max_length=256)]


class AuthenticateExternal(Intent):
    """Find or create the user for ``(issuer, sub)``, an identity a provider vouched for.

    Never matched to an existing user by name or email: a provider's say-so about an address is
    not proof of owning a local account.
    """

    subject = names.IDENTITY_AUTHENTICATE

    issuer: str = Field(min_length=1, max_length=512)
    sub: str = Field(min_length=1, max_length=255)
    email: Claim | None = None
    name: Claim | None = None
    preferred_username: Claim | None = None


class AuthenticateExternalReply(Reply):
    """The user the identity maps to, and whether this login created it."""

    user: UserInfo
    created: bool


class StoreHandover(Intent):
    """Park a new session under a one-time code for the browser that logged in."""

    subject = names.HANDOVER_STORE

    session_id: SessionId
    user_id: UserId
    username: str
    jti: TokenId | None = None
    expires_at: datetime


class StoreHandoverReply(Reply):
    """The code (shown only to the Experience Plane that asked) and when it stops working."""

    code: str
    expires_at: datetime


class TakeHandover(Intent):
    """Trade a handover code for its session, once: the second take of a code fails."""

    subject = names.HANDOVER_TAKE

    code: SecretStr = Field(min_length=16, max_length=128)


class TakeHandoverReply(Reply):
    """The session the code stood for."""

    session_id: SessionId
    user_id: UserId
    username: str
    jti: TokenId | None = None
    expires_at: datetime
