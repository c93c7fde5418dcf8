"""The gate's wire protocol: close codes, subprotocols, and the JSON frames both ways."""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from intents import SessionExpired, SessionInactive, SessionNotFound, SymphainyError

SUBPROTOCOL: Final = "symphainy.v1"
BEARER_PREFIX: Final = "bearer."
TOKEN_QUERY_PARAM: Final = "session_token"


class CloseCode(IntEnum):
    """Close codes of ``/api/runtime/agent`` (the contract's table), and what a client does."""

    GOING_AWAY = 1001  # shutdown or drain: back off, retry
    MALFORMED = 4400  # stop
    TOKEN_INVALID = 4401  # stop, log in
    ORIGIN_FORBIDDEN = 4403  # stop
    SESSION_GONE = 4404  # stop, log in
    EXPIRED = 4408  # refresh once over HTTP, reconnect; else log in
    TOO_MANY = 4429  # back off, retry
    RUNTIME_UNAVAILABLE = 4503  # back off, retry


def close_code_for(exc: SymphainyError) -> CloseCode:
    """The close code for a failed session check."""
    if isinstance(exc, SessionExpired):
        return CloseCode.EXPIRED
    if isinstance(exc, (SessionNotFound, SessionInactive)):
        return CloseCode.SESSION_GONE
    return CloseCode.RUNTIME_UNAVAILABLE


def _json_numbers(payload: dict[str, Any]) -> dict[str, Any]:
    """Only numbers JSON can carry back: NaN and infinities (``1e999``) would reach the client
    as bare ``NaN``/``Infinity``, which ``JSON.parse`` refuses."""
    try:
        json.dumps(payload, allow_nan=False)
    except ValueError as exc:
        raise ValueError("numbers must be finite") from exc
    return payload


class _Frame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IntentFrame(_Frame):
    """Client → server: run an agent intent."""

    type: Literal["intent"]
    id: str = Field(min_length=1, max_length=128)
    intent: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    payload: Annotated[dict[str, Any], AfterValidator(_json_numbers)] = Field(default_factory=dict)


class RefreshFrame(_Frame):
    """Client → server: swap in a refreshed token for the same session."""

    type: Literal["refresh"]
    session_token: str = Field(min_length=1, max_length=8192)


ClientFrame = Annotated[IntentFrame | RefreshFrame, Field(discriminator="type")]


def ack(client_id: str, intent_id: str) -> dict[str, Any]:
    """The intent was accepted into the work queue."""
    return {"type": "ack", "id": client_id, "intent_id": intent_id}


def event(client_id: str, intent_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Progress of an intent."""
    return {"type": "event", "id": client_id, "intent_id": intent_id, "data": data}


def result(
    client_id: str, intent_id: str, data: dict[str, Any] | None, correlation_id: str
) -> dict[str, Any]:
    """The final result of an intent."""
    return {
        "type": "result",
        "id": client_id,
        "intent_id": intent_id,
        "data": data,
        "correlation_id": correlation_id,
    }


def error(client_id: str | None, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """A failed frame or intent; the socket stays open."""
    return {"type": "error", "id": client_id, "code": code, "message": message, **extra}


def refreshed(expires_at: str) -> dict[str, Any]:
    """The in-band refresh took effect."""
    return {"type": "refreshed", "expires_at": expires_at}
