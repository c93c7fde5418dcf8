"""Intent and reply models: frozen, strict, secrets redacted, errors round-trip the wire."""

from __future__ import annotations

import json
import types
from datetime import timedelta

import pytest
from pydantic import SecretStr, ValidationError

import intents
from intents import (
    REPLY_OF,
    AuthenticateUser,
    CancelAgentRun,
    CreateSession,
    ErrorReply,
    Intent,
    PingReply,
    RateLimited,
    RunAgent,
    SessionNotFound,
    SessionRevoked,
    SymphainyError,
    VerifySession,
    error_from_wire,
    utcnow,
)
from intents.base import REDACTED
from intents.request import parse_reply

USER = "a" * 32
SESSION = "b" * 32


def test_public_surface_is_exactly_all() -> None:
    exported = {n for n in dir(intents) if not n.startswith("_")}
    # Submodules appear as attributes once imported (``intents.request`` by whoever uses it).
    modules = {n for n in exported if isinstance(getattr(intents, n), types.ModuleType)}
    assert modules <= {
        "agent",
        "asyncapi",
        "base",
        "errors",
        "identity",
        "request",
        "session",
        "system",
        "user",
    }
    assert set(intents.__all__) == exported - modules


def test_every_intent_has_a_reply_type_and_subject() -> None:
    intent_types = [
        getattr(intents, n)
        for n in intents.__all__
        if isinstance(getattr(intents, n), type)
        and issubclass(getattr(intents, n), Intent)
        and getattr(intents, n) is not Intent
    ]
    # Agent work and its cancellation are published, not requested: no reply.
    assert set(intent_types) - {RunAgent, CancelAgentRun} == set(REPLY_OF)
    subjects = [t.subject for t in intent_types]
    assert len(subjects) == len(set(subjects))
    for subject in subjects:
        assert subject.startswith(("intents.", "credentials."))


def test_intents_are_frozen_and_forbid_extra_fields() -> None:
    intent = VerifySession(session_id=SESSION, user_id=USER)
    with pytest.raises(ValidationError):
        intent.session_id = "c" * 32  # type: ignore[misc]
    with pytest.raises(ValidationError):
        VerifySession(session_id=SESSION, user_id=USER, extra="x")  # type: ignore[call-arg]


def test_envelope_is_filled_in() -> None:
    intent = VerifySession(session_id=SESSION, user_id=USER)
    assert len(intent.intent_id) == 32
    assert len(intent.correlation_id) == 32
    assert intent.intent_id != VerifySession(session_id=SESSION, user_id=USER).intent_id
    assert intent.deadline is None
    timed = intent.with_deadline(2.0)
    assert timed.deadline is not None
    assert timedelta(seconds=1.5) < timed.deadline - utcnow() <= timedelta(seconds=2)
    assert timed.with_deadline(99).deadline == timed.deadline
    assert not timed.expired()
    assert timed.expired(utcnow() + timedelta(seconds=3))


@pytest.mark.parametrize("bad", ["", "short", "G" * 32, "../../etc/passwd", "a" * 33])
def test_session_ids_must_be_128_bit_hex(bad: str) -> None:
    with pytest.raises(ValidationError):
        VerifySession(session_id=bad, user_id=USER)


def test_password_travels_on_the_wire_but_never_into_the_audit() -> None:
    intent = AuthenticateUser(username="alice", password="hunter2")  # type: ignore[arg-type]
    wire = json.loads(intent.to_wire())
    audit = json.loads(intent.to_audit())
    assert wire["password"] == "hunter2"
    assert audit["password"] == REDACTED
    assert "hunter2" not in repr(intent)
    assert AuthenticateUser.model_validate_json(intent.to_wire()) == intent
    assert not AuthenticateUser.subject.startswith("intents.")


def test_idempotency_key_is_bounded() -> None:
    with pytest.raises(ValidationError):
        CreateSession(user_id=USER, username="a", idempotency_key="")
    with pytest.raises(ValidationError):
        CreateSession(user_id=USER, username="a", idempotency_key="k" * 201)


def test_error_codes_are_unique_and_round_trip() -> None:
    codes = [cls.code for cls in intents.errors.ERRORS_BY_CODE.values()]
    assert len(codes) == len(set(codes))
    assert isinstance(error_from_wire("session_revoked", "gone"), SessionRevoked)
    assert type(error_from_wire("no_such_code", "?")) is SymphainyError


def test_parse_reply_raises_the_typed_error() -> None:
    wire = ErrorReply.from_error(SessionNotFound()).model_dump_json().encode()
    assert json.loads(wire) == {
        "ok": False,
        "error": {"code": "session_not_found", "message": "session not found", "retryable": False},
    }
    with pytest.raises(SessionNotFound):
        parse_reply(wire, PingReply)
    assert parse_reply(b'{"ok": true, "worker_id": "w1"}', PingReply).worker_id == "w1"
    with pytest.raises(SymphainyError):
        parse_reply(b"not json", PingReply)
    with pytest.raises(SymphainyError):
        parse_reply(b'{"ok": true}', PingReply)


def test_a_rate_limit_carries_its_retry_after_across_the_wire() -> None:
    wire = (
        ErrorReply.from_error(RateLimited("slow down", retry_after=42)).model_dump_json().encode()
    )
    assert json.loads(wire)["error"]["retry_after_s"] == 42
    with pytest.raises(RateLimited) as caught:
        parse_reply(wire, PingReply)
    assert caught.value.retry_after == 42
    assert caught.value.message == "slow down"
    plain = ErrorReply.from_error(RateLimited()).model_dump_json().encode()
    assert "retry_after_s" not in json.loads(plain)["error"]
    with pytest.raises(RateLimited) as caught:
        parse_reply(plain, PingReply)
    assert caught.value.retry_after is None


SAMPLE_VALUES = {
    "username": "alice",
    "password": "correct horse",
    "user_id": "b" * 32,
    "session_id": "a" * 32,
    "jti": "c" * 32,
    "issuer": "https://id.example",
    "sub": "248289761001",
    "expires_at": "2030-01-01T00:00:00Z",
    "code": "d" * 43,
}


def test_the_wire_form_of_every_intent_is_its_json_with_secrets_revealed() -> None:
    # to_wire takes pydantic's serializer when an intent has no secret; both paths must agree.
    for intent_type in REPLY_OF:
        fields: dict[str, object] = {}
        for name, field in intent_type.model_fields.items():
            if field.is_required():
                fields[name] = SAMPLE_VALUES[name]
        intent = intent_type(**fields)
        expected = intent.model_dump(mode="json")
        for name, value in intent:
            if isinstance(value, SecretStr):
                expected[name] = value.get_secret_value()
        assert json.loads(intent.to_wire()) == expected, intent_type.__name__
