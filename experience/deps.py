"""Dependencies of the routes, as ``Annotated`` aliases.

``RuntimeDep`` sends intents within the request's deadline; ``CallerDep`` is a Bearer caller
whose token verified and whose session the runtime confirmed live, just now.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from nats.aio.client import Client

from bus.settings import Settings
from experience.errors import Unauthorized
from experience.ratelimit import LoginLimiter
from experience.tokens import TokenClaims, Tokens
from intents import (
    Intent,
    NotFound,
    Reply,
    RuntimeUnavailable,
    SessionInactive,
    TokenExpired,
    TokenInvalid,
    VerifySession,
    VerifySessionReply,
)
from intents.request import request as send

R = TypeVar("R", bound=Reply)

_bearer = HTTPBearer(auto_error=False)


class Runtime:
    """The runtime as one request sees it: every intent shares the request's deadline."""

    def __init__(self, nc: Client, settings: Settings, correlation_id: str) -> None:
        self.nc = nc
        self.correlation_id = correlation_id
        self._deadline = time.monotonic() + settings.request_timeout_s

    async def ask(self, intent: Intent, reply_type: type[R]) -> R:
        """Send ``intent`` with this request's correlation id; typed reply or typed error."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeUnavailable("no runtime worker answered in time")
        intent = intent.model_copy(update={"correlation_id": self.correlation_id})
        return await send(self.nc, intent, reply_type, remaining)


@dataclass(frozen=True)
class Caller:
    """An authenticated Bearer caller and their live session."""

    claims: TokenClaims
    session: VerifySessionReply

    @property
    def user_id(self) -> str:
        """The caller's user id."""
        return self.claims.sub

    @property
    def session_id(self) -> str:
        """The session the caller's token names."""
        return self.claims.sid

    @property
    def actor(self) -> str:
        """The caller, as the intent envelope names actors."""
        return f"user:{self.claims.sub}"


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_tokens(request: Request) -> Tokens:
    """The app's token issuer and verifier."""
    tokens: Tokens = request.app.state.tokens
    return tokens


def get_limiter(request: Request) -> LoginLimiter:
    """The app's login limiter."""
    limiter: LoginLimiter = request.app.state.limiter
    return limiter


def get_runtime(request: Request) -> Runtime:
    """A runtime handle for this request."""
    return Runtime(request.app.state.nc, get_settings(request), request.state.correlation_id)


SettingsDep = Annotated[Settings, Depends(get_settings)]
TokensDep = Annotated[Tokens, Depends(get_tokens)]
LimiterDep = Annotated[LoginLimiter, Depends(get_limiter)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def bearer_token(credentials: BearerDep) -> str:
    """The raw Bearer token; 401 if there is none."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized(TokenInvalid("missing bearer token"))
    return credentials.credentials


TokenDep = Annotated[str, Depends(bearer_token)]


async def get_caller(token: TokenDep, tokens: TokensDep, runtime: RuntimeDep) -> Caller:
    """Verify the token, then ask the runtime whether its session is live and it is current.

    A token that a refresh replaced is refused (401 ``token_invalid``), like a forged one.
    """
    try:
        claims = tokens.verify(token)
        session = await runtime.ask(
            VerifySession(
                session_id=claims.sid,
                user_id=claims.sub,
                jti=claims.jti,
                actor=f"user:{claims.sub}",
            ),
            VerifySessionReply,
        )
    except (NotFound, SessionInactive, TokenInvalid, TokenExpired) as exc:
        raise Unauthorized(exc) from exc
    return Caller(claims=claims, session=session)


CallerDep = Annotated[Caller, Depends(get_caller)]
