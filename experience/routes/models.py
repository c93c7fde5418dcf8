"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.convertors import Convertor, register_url_convertor

from intents import SessionInfo, SessionState

# A session id is 128 random bits in hex (the runtime makes them). Routing matches only that, so
# ``/api/session/create`` or ``/api/session/refresh`` is never read as an id: a wrong method
# there is 405 with ``Allow: POST``, and anything else under ``/api/session/`` is a plain 404.
SESSION_ID_REGEX: Final = "[0-9a-f]{32}"


class SessionIdConvertor(Convertor[str]):
    """The ``{session_id:session_id}`` path segment."""

    regex = SESSION_ID_REGEX

    def convert(self, value: str) -> str:
        """The segment as it came."""
        return value

    def to_string(self, value: str) -> str:
        """The id as a path segment."""
        return value


register_url_convertor("session_id", SessionIdConvertor())

SESSION_PATH: Final = "/api/session/{session_id:session_id}"
SessionId = Annotated[
    str, Path(pattern=f"^{SESSION_ID_REGEX}$", description="a session id, 32 hex digits")
]


class LoginRequest(BaseModel):
    """Credentials for ``POST /api/auth/login``."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=256)
    password: SecretStr = Field(min_length=1, max_length=1024)


class UserView(BaseModel):
    """The user a session belongs to."""

    id: str
    username: str


class IssuedSession(BaseModel):
    """A session and a token that names it."""

    session_id: str
    session_token: str
    expires_at: datetime


class LoginResponse(IssuedSession):
    """A new session for the user who logged in."""

    user: UserView


class RefreshResponse(IssuedSession):
    """A new token for the same session."""


class SessionView(BaseModel):
    """A session as its owner sees it."""

    session_id: str
    user_id: str
    state: SessionState
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    current: bool = Field(description="whether this is the session of the calling token")

    @classmethod
    def of(cls, session: SessionInfo, current_session_id: str) -> SessionView:
        """The view of ``session`` for the caller whose session is ``current_session_id``."""
        return cls(
            session_id=session.session_id,
            user_id=session.user_id,
            state=session.state,
            created_at=session.created_at,
            expires_at=session.expires_at,
            last_seen_at=session.last_seen_at,
            current=session.session_id == current_session_id,
        )


class ErrorDetail(BaseModel):
    """A machine code and a human message."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    return {status: {"model": ErrorBody} for status in statuses}
