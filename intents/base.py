"""The envelope every intent carries, and the two reply shapes: success and typed error."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from intents.errors import SymphainyError

REDACTED = "[redacted]"


def new_id() -> str:
    """A random identifier of 128 bits, URL- and NATS-key-safe."""
    return secrets.token_hex(16)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Intent(BaseModel):
    """Base of every intent: what a caller wants done, with its envelope.

    ``subject`` is where the runtime listens for it. Secret fields are ``SecretStr``: sent on
    the wire, redacted in the audit record.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: ClassVar[str]
    # Safe to send again when no reply came: reads, and writes whose repeat changes nothing the
    # caller sees. A request helper may then ask a second worker before the deadline.
    retry_safe: ClassVar[bool] = False
    # Reads change nothing: their successes are counted (metrics), not stored in the audit
    # stream, which at 1,000 verifies/s would otherwise hold minutes, not days. Every write and
    # every failure is audited.
    reads_only: ClassVar[bool] = False

    intent_id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    correlation_id: str = Field(default_factory=new_id, min_length=1, max_length=128)
    issued_at: datetime = Field(default_factory=utcnow)
    actor: str = Field(default="anonymous", min_length=1, max_length=200)
    deadline: datetime | None = None

    def with_deadline(self, seconds: float) -> Intent:
        """This intent with a deadline ``seconds`` from now, unless it already has one."""
        if self.deadline is not None:
            return self
        return self.model_copy(update={"deadline": utcnow() + timedelta(seconds=seconds)})

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the deadline has passed."""
        return self.deadline is not None and (now or utcnow()) > self.deadline

    def to_wire(self) -> bytes:
        """JSON for the bus, secrets included (they only travel outside the audited subjects)."""
        if not _secret_fields(type(self)):
            # Every request pays for this: pydantic's own serializer is ~5x the dict round trip.
            return self.model_dump_json().encode()
        data = self.model_dump(mode="json")
        for name, value in self:
            if isinstance(value, SecretStr):
                data[name] = value.get_secret_value()
        return _dumps(data)

    def to_audit(self) -> bytes:
        """JSON for the audit log and operators: every secret replaced by a marker."""
        data = self.model_dump(mode="json")
        for name, value in self:
            if isinstance(value, SecretStr):
                data[name] = REDACTED
        return _dumps(data)


class Reply(BaseModel):
    """Base of every successful reply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: Literal[True] = True


class ErrorBody(BaseModel):
    """The typed error carried by a failed reply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    message: str
    retryable: bool = False
    retry_after_s: int | None = Field(default=None, ge=1)

    @model_serializer(mode="wrap")
    def _without_absent_retry_after(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Only errors that know when to try again say so; the others keep the contract's shape.
        data = handler(self)
        if isinstance(data, dict) and data.get("retry_after_s") is None:
            data.pop("retry_after_s", None)
        return data


class ErrorReply(BaseModel):
    """A failed reply: ``{"ok": false, "error": {...}}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: Literal[False] = False
    error: ErrorBody

    @classmethod
    def from_error(cls, exc: SymphainyError) -> ErrorReply:
        """The wire form of one of our errors."""
        return cls(
            error=ErrorBody(
                code=exc.code,
                message=exc.message,
                retryable=exc.retryable,
                retry_after_s=exc.retry_after,
            )
        )


@cache
def _secret_fields(cls: type[BaseModel]) -> frozenset[str]:
    """The fields of ``cls`` that hold a ``SecretStr`` (the wire must carry their value)."""
    return frozenset(
        name
        for name, field in cls.model_fields.items()
        if field.annotation is not None and "SecretStr" in repr(field.annotation)
    )


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
