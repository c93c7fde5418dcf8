"""``nats-context`` and ``nats-setup``: the bus's identities, for people, tools and deployments."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from bus.identity import IdentityError, NatsIdentity, context_path
from bus.permissions import Role
from bus.provision import ensure_secrets, write_contexts, write_server_config
from bus.settings import Settings


def print_context(settings: Settings, role: Role) -> int:
    """Print ``role``'s NATS CLI context as ``symphainy up`` wrote it, file paths made absolute.

    ``symphainy nats-context inspector > ~/.config/nats/context/symphainy.json`` and
    ``nats context select symphainy`` make the NATS CLI connect as the inspector.
    """
    path = context_path(settings.data_dir, role)
    if not path.is_file():
        print(
            f"error: no NATS context for {role.value} in {settings.data_dir} "
            "(run symphainy up, or symphainy nats-setup, with this --data-dir first)",
            file=sys.stderr,
        )
        return 1
    try:
        identity = NatsIdentity.from_context(path)
    except IdentityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(identity.to_context(), indent=2))
    return 0


def setup(settings: Settings, url: str, tls_hosts: Sequence[str]) -> int:
    """Write nats-server's configuration and every role's context for a NATS at ``url``.

    Existing passwords (and CA) are kept, so running it again changes nobody's credentials.
    With ``tls_hosts``, the server requires TLS with a certificate for those names, signed by a
    CA of our own that every context trusts.
    """
    bus = ensure_secrets(settings.data_dir, tls_hosts)
    config = write_server_config(bus)
    if tls_hosts and not url.startswith("tls://"):
        url = "tls://" + url.split("://", 1)[-1]
    write_contexts(bus, settings.data_dir, url, relative=True)
    print(f"nats-server configuration: {config}")
    for role in Role:
        print(f"{role.value:<11} {context_path(settings.data_dir, role)}")
    return 0
