"""The one signing-key check, for every source: the settings' rotation list and the key file."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pydantic import SecretStr

from bus.settings import Settings
from experience import keys
from experience.tokens import Keyring

# 512-bit RSA: cryptography refuses to make one, but loads it (``openssl genrsa 512``).
RSA_512 = """-----BEGIN PRIVATE KEY-----
MIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8AgEAAkEAvgnm6ZNHfk/2ndMI
xHvPrWAlN1aDF39gULR/UNDZp6Q/qNhoLGxFCxT7gYAhSbR+ltXS3vhwGzMoILtl
MjYQWwIDAQABAkBQzbELe/4YLTP1Y3gE44godgsc/oH7CcQQTM8ds8/4QVdWrpQo
wOFvM4S4tjcgLOVYoBpZ0v9vLdwJfLXqDh/BAiEA+ucpRTClIB3ZOBiatIt1bdnf
VWoQniN1EIQxX8XWqwsCIQDB5jYxj1hw+XYnzR2mTd94wXguP6DB+yXtzI+cvdwB
8QIhAK14KymCM3hcCrXlFPkkvoC/tNB6L5kWTLapnvVndD73AiEAgAE7q7InP8Xg
M9xcg4qLSgvnDBkjRoxHeNp/wIkycfECIQCzGLm86tv3DS2vbPO6LBv7kSmVVfPT
ean4yfBKLm7tEA==
-----END PRIVATE KEY-----
"""

WEAK_HMAC = [
    "secret",
    "changeme",
    "a" * 32,
    "x" * 40,
    "ab" * 32,
    "secret" * 8,
    "0123456789abcdef" * 2,
    "short but not a placeholder",
    secrets.token_hex(16),  # 16 random bytes, written as 32 characters
]
STRONG_HMAC = [secrets.token_urlsafe(32), secrets.token_urlsafe(48), secrets.token_hex(32)]


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(data_dir=tmp_path, _env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.mark.parametrize("secret", WEAK_HMAC)
def test_weak_hmac_keys_are_refused_outside_dev_mode(secret: str) -> None:
    with pytest.raises(
        keys.KeyRejected, match=r"signing key 'k1' from env .*refused outside --dev"
    ):
        keys.check("HS256", {"k1": secret}, source="env", dev_mode=False)
    keys.check("HS256", {"k1": secret}, source="env", dev_mode=True)


@pytest.mark.parametrize("secret", STRONG_HMAC)
def test_random_hmac_keys_of_32_bytes_or_more_pass(secret: str) -> None:
    keys.check("HS512", {"k1": secret}, source="env", dev_mode=False)


def test_rsa_below_2048_bits_is_refused_and_2048_passes() -> None:
    with pytest.raises(keys.KeyRejected, match="RSA-512"):
        keys.check("RS256", {"old": RSA_512}, source="env", dev_mode=False)
    keys.check("RS256", {"old": RSA_512}, source="env", dev_mode=True)
    strong = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    keys.check("RS256", {"new": strong}, source="env", dev_mode=False)


def test_ec_keys_must_be_on_the_algorithms_curve() -> None:
    p256 = pem(ec.generate_private_key(ec.SECP256R1()))
    keys.check("ES256", {"k": p256}, source="env", dev_mode=False)
    for algorithm, key in [
        ("ES384", p256),
        ("ES256", pem(ec.generate_private_key(ec.SECP192R1()))),
    ]:
        # A wrong curve cannot sign at all: refused even in dev mode.
        with pytest.raises(keys.KeyRejected, match="curve"):
            keys.check(algorithm, {"k": key}, source="env", dev_mode=True)


def test_a_key_of_the_wrong_kind_or_no_pem_is_refused_even_in_dev_mode() -> None:
    p256 = pem(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(keys.KeyRejected, match="not an RSA key"):
        keys.check("RS256", {"k": p256}, source="env", dev_mode=True)
    with pytest.raises(keys.KeyRejected, match="not an unencrypted PEM"):
        keys.check("EdDSA", {"k": "not a pem"}, source="env", dev_mode=True)


def test_es256_keys_sign_tokens() -> None:
    ring = Keyring("ES256", {"k": pem(ec.generate_private_key(ec.SECP256R1()))}, "k")
    token = jwt.encode({"x": 1}, ring.signing_key(), algorithm="ES256")
    assert jwt.decode(token, ring.verifying_key("k"), algorithms=["ES256"]) == {"x": 1}


def test_one_weak_key_in_the_rotation_list_refuses_the_list(tmp_path: Path) -> None:
    rotation = {"k1": SecretStr(secrets.token_urlsafe(48)), "k2": SecretStr("a" * 32)}
    with pytest.raises(keys.KeyRejected, match=f"'k2' from {keys.ENV_SOURCE}"):
        keys.resolve(settings(tmp_path, jwt_keys=rotation, jwt_active_kid="k1"))
    resolved = keys.resolve(settings(tmp_path, jwt_keys=rotation, dev_mode=True))
    assert resolved.jwt_active_kid == "k2"


@pytest.mark.parametrize("secret", ["secret", "a" * 32])
def test_a_weak_key_in_the_key_file_is_refused_outside_dev_mode(
    tmp_path: Path, secret: str
) -> None:
    path = keys.key_path(settings(tmp_path))
    path.write_text(json.dumps({"active": "k1", "keys": {"k1": secret}}))
    with pytest.raises(keys.KeyRejected, match=f"'k1' from {path}") as refused:
        keys.resolve(settings(tmp_path))
    assert "\n" not in str(refused.value)
    assert keys.resolve(settings(tmp_path, dev_mode=True)).jwt_keys["k1"].get_secret_value() == (
        secret
    )


@pytest.mark.parametrize("content", ["{", "[]", '{"active": "k9", "keys": {"k1": "x"}}'])
def test_a_broken_key_file_is_one_clear_error(tmp_path: Path, content: str) -> None:
    keys.key_path(settings(tmp_path)).write_text(content)
    with pytest.raises(keys.KeyRejected, match="is not a valid key file"):
        keys.resolve(settings(tmp_path))


def test_the_generated_key_passes_the_check(tmp_path: Path) -> None:
    resolved = keys.resolve(settings(tmp_path))
    assert resolved.jwt_active_kid is not None
    secret = resolved.jwt_keys[resolved.jwt_active_kid].get_secret_value()
    keys.check("HS256", {"k": secret}, source="file", dev_mode=False)
