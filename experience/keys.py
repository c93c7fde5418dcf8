"""Where the signing keys come from: settings, or a key file generated once in the data dir.

The file (``signing-keys.json``, mode 0600) lets ``symphainy up`` keep tokens valid across
restarts with no configuration, and lets several Experience processes on one machine agree.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from bus.settings import Settings

log = logging.getLogger(__name__)

KEY_FILE = "signing-keys.json"


def key_path(settings: Settings) -> Path:
    """The key file under the data dir."""
    return settings.data_dir / KEY_FILE


def resolve(settings: Settings) -> Settings:
    """``settings`` with signing keys: configured ones, or the data dir's (made if absent)."""
    if settings.jwt_keys:
        active = settings.jwt_active_kid or sorted(settings.jwt_keys)[-1]
        return settings.model_copy(update={"jwt_active_kid": active})
    if not settings.jwt_algorithm.startswith("HS"):
        raise ValueError(
            f"{settings.jwt_algorithm} needs keys in settings (SYMPHAINY_JWT_KEYS); "
            "only HMAC keys are generated"
        )
    active, keys = _load_or_create(key_path(settings))
    return settings.model_copy(
        update={"jwt_keys": {k: SecretStr(v) for k, v in keys.items()}, "jwt_active_kid": active}
    )


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
    raw = json.loads(path.read_text())
    keys = raw["keys"]
    active = raw["active"]
    if not isinstance(keys, dict) or active not in keys:
        raise ValueError(f"{path} is not a valid key file")
    return str(active), {str(k): str(v) for k, v in keys.items()}
