"""Where the signing keys come from, and the one check every key passes wherever it came from.

Keys come from settings (``SYMPHAINY_JWT_KEYS``, every kid of the rotation list) or from a key
file generated once in the data dir (``signing-keys.json``, mode 0600), which lets
``symphainy up`` keep tokens valid across restarts with no configuration and lets several
Experience processes on one machine agree. Either way ``resolve`` runs ``check`` on every key:
outside dev mode a weak key is ``KeyRejected``, and whoever holds a weak key can forge tokens.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import SecretStr

from bus.settings import Settings

log = logging.getLogger(__name__)

KEY_FILE = "signing-keys.json"
ENV_SOURCE = "SYMPHAINY_JWT_KEYS"

# HMAC: at least this many bytes, and an estimated entropy (Shannon, over the key's characters)
# of at least this many bits: "a" * 32 is 32 bytes of nothing.
MIN_HMAC_BYTES = 32
MIN_HMAC_ENTROPY_BITS = 128
# Values that mean "nobody configured this", however long a pattern makes them.
PLACEHOLDERS = ("changeme", "changethis", "change-me", "change_me", "secret", "password", "dev")
_HMAC_ADVICE = "; make one with python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
MIN_RSA_BITS = 2048
# The curve each ECDSA algorithm signs with (RFC 7518 3.4): P-256 or larger.
EC_CURVES: Mapping[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


class KeyRejected(ValueError):
    """A signing key that cannot be used (unreadable, wrong type) or, outside dev mode, is weak."""


def key_path(settings: Settings) -> Path:
    """The key file under the data dir."""
    return settings.data_dir / KEY_FILE


def resolve(settings: Settings) -> Settings:
    """``settings`` with checked signing keys: configured, else the data dir's (made if absent)."""
    if settings.jwt_keys:
        keys = {kid: secret.get_secret_value() for kid, secret in settings.jwt_keys.items()}
        check(settings.jwt_algorithm, keys, source=ENV_SOURCE, dev_mode=settings.dev_mode)
        active = settings.jwt_active_kid or sorted(settings.jwt_keys)[-1]
        return settings.model_copy(update={"jwt_active_kid": active})
    if not settings.jwt_algorithm.startswith("HS"):
        raise KeyRejected(
            f"{settings.jwt_algorithm} needs keys in settings ({ENV_SOURCE}); "
            "only HMAC keys are generated"
        )
    path = key_path(settings)
    active, keys = _load_or_create(path)
    check(settings.jwt_algorithm, keys, source=str(path), dev_mode=settings.dev_mode)
    return settings.model_copy(
        update={"jwt_keys": {k: SecretStr(v) for k, v in keys.items()}, "jwt_active_kid": active}
    )


def check(algorithm: str, keys: Mapping[str, str], *, source: str, dev_mode: bool) -> None:
    """Refuse any key of ``keys`` that cannot sign ``algorithm``, or (outside dev mode) is weak.

    HMAC keys: at least 32 bytes, no placeholder, no repeated pattern, at least 128 bits of
    estimated entropy. RSA: at least 2048 bits. ECDSA: the algorithm's curve (P-256 or larger).
    EdDSA: Ed25519 or Ed448.
    """
    for kid, secret in keys.items():
        unusable, weak = _problems(algorithm, secret)
        if unusable is not None:
            raise KeyRejected(f"signing key {kid!r} from {source} {unusable}")
        if weak is not None and not dev_mode:
            advice = _HMAC_ADVICE if algorithm.startswith("HS") else ""
            raise KeyRejected(
                f"signing key {kid!r} from {source} {weak} (refused outside --dev{advice})"
            )


def _problems(algorithm: str, secret: str) -> tuple[str | None, str | None]:
    """What makes the key unusable, and what makes it weak (each None if nothing)."""
    if algorithm.startswith("HS"):
        return None, _hmac_weakness(secret)
    try:
        key = load_pem_private_key(secret.encode(), password=None)
    except (ValueError, TypeError):
        return "is not an unencrypted PEM private key", None
    if algorithm.startswith("RS"):
        if not isinstance(key, rsa.RSAPrivateKey):
            return f"is not an RSA key ({algorithm})", None
        if key.key_size < MIN_RSA_BITS:
            return None, f"is RSA-{key.key_size}; at least RSA-{MIN_RSA_BITS} is required"
        return None, None
    if algorithm in EC_CURVES:
        wanted = EC_CURVES[algorithm]
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            return f"is not an EC key ({algorithm})", None
        if not isinstance(key.curve, wanted):
            return f"is on curve {key.curve.name}; {algorithm} needs {wanted.name}", None
        return None, None
    if algorithm == "EdDSA":
        if not isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
            return "is not an Ed25519 or Ed448 key (EdDSA)", None
        return None, None
    return f"cannot sign {algorithm}", None


def _hmac_weakness(secret: str) -> str | None:
    value = secret.strip().lower()
    if not value or any(value.replace(p, "") == "" for p in PLACEHOLDERS if p in value):
        return "is a placeholder"
    size = len(secret.encode())
    if size < MIN_HMAC_BYTES:
        return f"is {size} bytes, not at least {MIN_HMAC_BYTES} random bytes"
    if secret in (secret + secret)[1:-1]:
        return "is a repeated pattern"
    bits = _entropy_bits(secret)
    if bits < MIN_HMAC_ENTROPY_BITS:
        return (
            f"is too predictable (about {bits:.0f} bits of entropy, "
            f"{MIN_HMAC_ENTROPY_BITS} required)"
        )
    return None


def _entropy_bits(text: str) -> float:
    """An estimate of the entropy of ``text``: Shannon entropy per character times its length."""
    counts = Counter(text)
    n = len(text)
    per_char = -sum(c / n * math.log2(c / n) for c in counts.values())
    return per_char * n


def _load_or_create(path: Path) -> tuple[str, dict[str, str]]:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    kid = f"k{secrets.token_hex(4)}"
    secret = secrets.token_urlsafe(48)
    data = {"active": kid, "keys": {kid: secret}}
    # Written aside, then linked into place: readers never see a half-written file, and if
    # another process got there first, its key wins.
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _read(path)
    finally:
        tmp.unlink()
    log.info("generated a signing key in %s", path)
    return kid, {kid: secret}


def _read(path: Path) -> tuple[str, dict[str, str]]:
    try:
        raw = json.loads(path.read_text())
        keys, active = raw["keys"], raw["active"]
    except FileNotFoundError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise KeyRejected(f"{path} is not a valid key file ({type(exc).__name__})") from exc
    if not isinstance(keys, dict) or active not in keys:
        raise KeyRejected(f"{path} is not a valid key file")
    if not all(isinstance(v, str) for v in keys.values()):
        raise KeyRejected(f"{path} is not a valid key file (a key is not a string)")
    return str(active), {str(k): str(v) for k, v in keys.items()}
