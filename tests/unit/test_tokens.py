"""Session tokens: pinned algorithms, required claims, key rotation, expiry and refresh grace."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pydantic import SecretStr

from bus.settings import Settings
from experience import keys
from experience.tokens import Keyring, Tokens
from intents import TokenExpired, TokenInvalid, new_id

SECRET = "s" * 64
OTHER = "o" * 64
USER, SESSION, JTI = new_id(), new_id(), new_id()
FAR = datetime(2100, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def make(
    keyring: Keyring | None = None, clock: Clock | None = None, ttl: int = 900, grace: int = 60
) -> Tokens:
    return Tokens(
        keyring or Keyring("HS256", {"a": SECRET}, "a"),
        issuer="symphainy",
        audience="symphainy",
        ttl_s=ttl,
        refresh_grace_s=grace,
        clock=clock or Clock(),
    )


def forge(claims: dict[str, object], key: str = SECRET, **header: str) -> str:
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": "a", **header})


def valid_claims() -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "sub": USER,
        "sid": SESSION,
        "jti": new_id(),
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "iss": "symphainy",
        "aud": "symphainy",
    }


def test_issued_token_verifies_with_its_claims() -> None:
    tokens = make()
    issued = tokens.issue(USER, SESSION, FAR, jti=JTI)
    claims = tokens.verify(issued.token)
    assert (claims.sub, claims.sid, claims.jti, claims.kid) == (USER, SESSION, JTI, "a")
    assert claims.exp == issued.claims.exp
    assert jwt.get_unverified_header(issued.token)["kid"] == "a"


def test_a_session_without_a_recorded_jti_gets_a_random_one() -> None:
    first = make().issue(USER, SESSION, FAR, jti=None).claims.jti
    assert first != make().issue(USER, SESSION, FAR, jti=None).claims.jti
    assert len(first) == 32


@pytest.mark.parametrize("jti", ["x", "A" * 32, "a" * 32 + "\n", 7])
def test_a_jti_that_cannot_name_a_token_is_invalid(jti: object) -> None:
    claims = valid_claims() | {"jti": jti}
    with pytest.raises(TokenInvalid):
        make().verify(forge(claims))


def test_token_never_outlives_its_session() -> None:
    tokens = make(ttl=3600)
    cap = datetime.now(UTC) + timedelta(seconds=30)
    issued = tokens.issue(USER, SESSION, cap, jti=JTI)
    assert issued.claims.exp <= cap


def test_forged_valid_claims_verify_so_the_other_tests_mean_something() -> None:
    assert make().verify(forge(valid_claims())).sid == SESSION


@pytest.mark.parametrize("claim", ["sub", "sid", "jti", "iat", "nbf", "exp", "iss", "aud"])
def test_every_claim_is_required(claim: str) -> None:
    claims = valid_claims()
    del claims[claim]
    with pytest.raises(TokenInvalid):
        make().verify(forge(claims))


@pytest.mark.parametrize(
    ("claim", "value"),
    [("iss", "someone-else"), ("aud", "another-app"), ("sub", "not-an-id"), ("sid", "../x")],
)
def test_wrong_claim_values_are_refused(claim: str, value: str) -> None:
    claims = valid_claims() | {claim: value}
    with pytest.raises(TokenInvalid):
        make().verify(forge(claims))


def test_wrong_signature_is_refused() -> None:
    with pytest.raises(TokenInvalid):
        make().verify(forge(valid_claims(), key=OTHER))


def test_alg_none_is_refused() -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": "a"}).encode())
    body = base64.urlsafe_b64encode(
        json.dumps({**valid_claims(), "iat": 1, "nbf": 1, "exp": 4_000_000_000}).encode()
    )
    token = f"{header.decode().rstrip('=')}.{body.decode().rstrip('=')}."
    with pytest.raises(TokenInvalid):
        make().verify(token)


def test_other_hmac_algorithm_with_the_right_key_is_refused() -> None:
    token = jwt.encode(valid_claims(), SECRET, algorithm="HS512", headers={"kid": "a"})
    with pytest.raises(TokenInvalid):
        make().verify(token)


def test_unknown_or_missing_kid_is_refused() -> None:
    with pytest.raises(TokenInvalid):
        make().verify(forge(valid_claims(), kid="zzz"))
    with pytest.raises(TokenInvalid):
        make().verify(jwt.encode(valid_claims(), SECRET, algorithm="HS256"))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "eyJ.eyJ.sig"])
def test_garbage_is_invalid_not_a_crash(garbage: str) -> None:
    with pytest.raises(TokenInvalid):
        make().verify(garbage)


def test_expired_token_is_expired() -> None:
    clock = Clock()
    tokens = make(clock=clock, ttl=60)
    old = Tokens(
        tokens.keyring,
        issuer="symphainy",
        audience="symphainy",
        ttl_s=1,
        refresh_grace_s=0,
        clock=lambda: datetime.now(UTC) - timedelta(minutes=10),
    ).issue(USER, SESSION, FAR, jti=JTI)
    with pytest.raises(TokenExpired):
        tokens.verify(old.token)


def test_refresh_accepts_a_recently_expired_token_but_not_an_old_one() -> None:
    def issued_ago(minutes: int) -> str:
        past = Tokens(
            Keyring("HS256", {"a": SECRET}, "a"),
            issuer="symphainy",
            audience="symphainy",
            ttl_s=60,
            refresh_grace_s=0,
            clock=lambda: datetime.now(UTC) - timedelta(minutes=minutes),
        )
        return past.issue(USER, SESSION, FAR, jti=JTI).token

    tokens = make(grace=300)
    assert tokens.verify_for_refresh(issued_ago(3)).sid == SESSION
    with pytest.raises(TokenExpired):
        tokens.verify_for_refresh(issued_ago(30))
    with pytest.raises(TokenInvalid):
        tokens.verify_for_refresh(forge(valid_claims(), key=OTHER))


def test_rotation_old_key_still_verifies_new_key_signs() -> None:
    before = make(Keyring("HS256", {"a": SECRET}, "a"))
    old_token = before.issue(USER, SESSION, FAR, jti=JTI).token
    after = make(Keyring("HS256", {"a": SECRET, "b": OTHER}, "b"))
    assert after.verify(old_token).kid == "a"
    new_token = after.issue(USER, SESSION, FAR, jti=JTI).token
    assert jwt.get_unverified_header(new_token)["kid"] == "b"
    with pytest.raises(TokenInvalid):
        before.verify(new_token)
    retired = make(Keyring("HS256", {"b": OTHER}, "b"))
    with pytest.raises(TokenInvalid):
        retired.verify(old_token)


def test_eddsa_keys_sign_and_verify() -> None:
    pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        .decode()
    )
    tokens = make(Keyring("EdDSA", {"ed": pem}, "ed"))
    token = tokens.issue(USER, SESSION, FAR, jti=JTI).token
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    assert tokens.verify(token).sub == USER
    with pytest.raises(TokenInvalid):
        make().verify(token)


def test_generated_key_file_is_private_and_stable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    first = keys.resolve(settings)
    second = keys.resolve(settings)
    path = keys.key_path(settings)
    assert path.stat().st_mode & 0o777 == 0o600
    assert first.jwt_active_kid == second.jwt_active_kid
    assert first.jwt_keys == second.jwt_keys
    assert list(tmp_path.iterdir()) == [path]


def test_configured_keys_win_over_the_file(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        jwt_keys={"mine": SecretStr(secrets.token_urlsafe(48))},
        _env_file=None,  # type: ignore[call-arg]
    )
    assert keys.resolve(settings).jwt_active_kid == "mine"
    assert not keys.key_path(settings).exists()
