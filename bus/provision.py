"""The bus's secrets: one password per role, nats-server's configuration, each role's context.

Made once in ``<data dir>/secrets`` (a 0700 folder, files 0600) by ``symphainy up`` or
``symphainy nats-setup``, and reused on every later start::

    secrets/roles.json          the role passwords (the source of truth)
    secrets/nats.conf           authorization (and TLS) for nats-server
    secrets/tls/                CA and server certificate, when TLS is on
    secrets/<role>/context.json the role's NATS CLI context (and ca.pem, when TLS is on)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.identity import NatsIdentity, context_path, secrets_dir, write_private
from bus.permissions import PERMISSIONS, Role, authorization
from bus.tls import TlsFiles, ensure_tls

ROLES_FILE = "roles.json"
SERVER_CONFIG = "nats.conf"
TLS_DIR = "tls"
CA_FILE = "ca.pem"
PASSWORD_BYTES = 32


@dataclass(frozen=True)
class BusSecrets:
    """The role passwords of one data directory, and its TLS files if TLS is on."""

    directory: Path
    passwords: dict[Role, str]
    tls: TlsFiles | None = None

    @property
    def server_config(self) -> Path:
        """Where nats-server's configuration is written."""
        return self.directory / SERVER_CONFIG


def ensure_secrets(data_dir: Path, tls_hostnames: Sequence[str] = ()) -> BusSecrets:
    """The data directory's role passwords, made on first use; TLS files for ``tls_hostnames``."""
    directory = secrets_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    roles_file = directory / ROLES_FILE
    stored: dict[str, str] = json.loads(roles_file.read_text()) if roles_file.is_file() else {}
    passwords = {
        role: stored.get(role.value) or secrets.token_urlsafe(PASSWORD_BYTES) for role in Role
    }
    if {r.value: p for r, p in passwords.items()} != stored:
        write_private(roles_file, json.dumps({r.value: p for r, p in passwords.items()}, indent=2))
    tls = ensure_tls(directory / TLS_DIR, tls_hostnames) if tls_hostnames else None
    return BusSecrets(directory, passwords, tls)


def server_config(bus: BusSecrets, extra_users: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """nats-server's configuration: every role, nobody anonymous, TLS if on."""
    config: dict[str, Any] = {"authorization": authorization(bus.passwords, extra_users)}
    if bus.tls is not None:
        config["tls"] = {
            "cert_file": str(bus.tls.cert),
            "key_file": str(bus.tls.key),
            "ca_file": str(bus.tls.ca),
            "timeout": 2,
        }
    return config


def write_server_config(bus: BusSecrets, extra_users: Iterable[dict[str, Any]] = ()) -> Path:
    """Write ``nats.conf`` (JSON is valid nats-server configuration); its path."""
    write_private(bus.server_config, json.dumps(server_config(bus, extra_users), indent=2))
    return bus.server_config


def role_identity(bus: BusSecrets, role: Role, url: str, ca: Path | None = None) -> NatsIdentity:
    """The identity of ``role`` on the server at ``url``."""
    return NatsIdentity(
        url=url,
        user=role.value,
        password=bus.passwords[role],
        ca=ca,
        inbox_prefix=PERMISSIONS[role].inbox_prefix,
    )


def write_contexts(bus: BusSecrets, data_dir: Path, url: str, *, relative: bool = False) -> None:
    """Each role's context for ``url``, in its own folder with a copy of the CA if TLS is on.

    ``relative``: the context names its CA relative to its folder, for a folder mounted
    elsewhere (compose gives each service only its own role's folder).
    """
    for role in Role:
        path = context_path(data_dir, role)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        ca: Path | None = None
        if bus.tls is not None:
            ca = path.parent / CA_FILE
            shutil.copyfile(bus.tls.ca, ca)
            os.chmod(ca, 0o644)
            if relative:
                ca = Path(CA_FILE)
        identity = role_identity(bus, role, url, ca)
        write_private(path, json.dumps(identity.to_context(), indent=2))
