"""The tests' NATS runs with authorization on, exactly as ``symphainy up`` configures it.

Every component a test starts connects with its own role's identity, found in the test's data
directory as ``up`` leaves it, so a green test also proves its role's permissions suffice. The
harness itself (setting up users, peeking into KV, playing an attacker with another role's
identity) connects as ``tests``, a user that exists only in the tests' server configuration.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from bus.identity import NatsIdentity, context_path
from bus.permissions import Role
from bus.provision import (
    BusSecrets,
    ensure_secrets,
    role_identity,
    write_contexts,
    write_server_config,
)

TEST_USER = "tests"


@dataclass(frozen=True)
class SecureBus:
    """The secrets of one test's bus: role identities and the harness's own."""

    data_dir: Path
    bus: BusSecrets
    config: Path
    test_password: str
    tls_hostnames: tuple[str, ...] = ()

    def publish(self, url: str) -> None:
        """Write every role's context for the server at ``url`` into the data directory."""
        write_contexts(self.bus, self.data_dir, url)

    def harness(self, url: str) -> NatsIdentity:
        """The test harness's identity: every permission."""
        ca = self.bus.tls.ca if self.bus.tls else None
        return NatsIdentity(url=url, user=TEST_USER, password=self.test_password, ca=ca)

    def role(self, role: Role, url: str) -> NatsIdentity:
        """The identity of ``role`` at ``url``."""
        ca = self.bus.tls.ca if self.bus.tls else None
        return role_identity(self.bus, role, url, ca)

    def context(self, role: Role) -> Path:
        """``role``'s context file (after ``publish``)."""
        return context_path(self.data_dir, role)


def secure_bus(data_dir: Path, tls_hostnames: tuple[str, ...] = ()) -> SecureBus:
    """Role secrets in ``data_dir`` and a server configuration that also admits the harness."""
    bus = ensure_secrets(data_dir, tls_hostnames)
    password = secrets.token_urlsafe(24)
    config = write_server_config(bus, [{"user": TEST_USER, "password": password}])
    return SecureBus(data_dir, bus, config, password, tls_hostnames)
