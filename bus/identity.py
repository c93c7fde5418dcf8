"""A process's identity on the bus, read from and written as a NATS CLI context file.

A context is the JSON the ``nats`` CLI keeps in ``~/.config/nats/context/NAME.json``: ``url``,
``user``/``password``, TLS files (``ca``, ``cert``, ``key``) and ``inbox_prefix``. Each
component takes its role's context from ``--nats-context`` / ``SYMPHAINY_NATS_CONTEXT``, or
from the data directory where ``symphainy up`` (or ``symphainy nats-setup``) wrote it.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bus import names
from bus.files import write_atomic
from bus.permissions import Role
from bus.settings import DEFAULT_NATS_URL, Settings

# Where ``up`` and ``nats-setup`` keep the bus secrets, inside the data directory.
SECRETS_DIR = "secrets"
CONTEXT_FILE = "context.json"


class IdentityError(Exception):
    """A context file is missing or unreadable; the message says which and why."""


@dataclass(frozen=True)
class NatsIdentity:
    """Where and as whom to connect: everything nats-py and FastStream need."""

    url: str
    user: str | None = None
    password: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    inbox_prefix: str = names.DEFAULT_INBOX_PREFIX

    def __repr__(self) -> str:  # never print the password
        return f"NatsIdentity(url={self.url!r}, user={self.user!r})"

    @property
    def tls(self) -> ssl.SSLContext | None:
        """A client TLS context trusting ``ca`` (and presenting ``cert``), if TLS is configured."""
        if self.ca is None and not self.url.startswith("tls://"):
            return None
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert is not None:
            context.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
        return context

    def nats_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` (servers included)."""
        options: dict[str, Any] = {"servers": [self.url], "inbox_prefix": self.inbox_prefix}
        if self.user is not None:
            options |= {"user": self.user, "password": self.password or ""}
        tls = self.tls
        if tls is not None:
            options["tls"] = tls
        return options

    def to_context(self) -> dict[str, str]:
        """The NATS CLI context for this identity."""
        context = {"description": f"symphainy {self.user or 'anonymous'}", "url": self.url}
        if self.user is not None:
            context |= {"user": self.user, "password": self.password or ""}
        for name in ("ca", "cert", "key"):
            value = getattr(self, name)
            if value is not None:
                context[name] = str(value)
        if self.inbox_prefix != names.DEFAULT_INBOX_PREFIX:
            context["inbox_prefix"] = self.inbox_prefix
        return context

    @classmethod
    def from_context(cls, path: Path) -> NatsIdentity:
        """Read a NATS CLI context file; only user/password contexts are supported."""
        try:
            raw = json.loads(path.read_text())
        except OSError as exc:
            raise IdentityError(f"cannot read NATS context {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise IdentityError(f"NATS context {path} is not JSON") from exc
        if not isinstance(raw, dict) or not raw.get("url"):
            raise IdentityError(f"NATS context {path} has no url")
        unsupported = {"creds", "nkey", "token", "user_jwt"} & {k for k, v in raw.items() if v}
        if unsupported:
            raise IdentityError(
                f"NATS context {path}: {', '.join(sorted(unsupported))} unsupported"
            )

        def file(name: str) -> Path | None:
            # A relative path is taken from the context's folder (a folder mounted elsewhere).
            value = raw.get(name)
            return path.parent / Path(value).expanduser() if value else None

        return cls(
            url=str(raw["url"]).split(",")[0].strip(),
            user=raw.get("user") or None,
            password=raw.get("password") or None,
            ca=file("ca"),
            cert=file("cert"),
            key=file("key"),
            inbox_prefix=raw.get("inbox_prefix") or names.DEFAULT_INBOX_PREFIX,
        )


def secrets_dir(data_dir: Path) -> Path:
    """Where the bus secrets of a data directory live."""
    return data_dir / SECRETS_DIR


def context_path(data_dir: Path, role: Role) -> Path:
    """The context file of ``role`` in a data directory."""
    return secrets_dir(data_dir) / role.value / CONTEXT_FILE


def write_private(path: Path, text: str) -> None:
    """Write ``text`` (one final newline) to a file only its owner can read."""
    write_atomic(path, text.rstrip("\n") + "\n")


def identity_for(settings: Settings, role: Role) -> NatsIdentity:
    """This process's identity as ``role``.

    ``--nats-context`` wins; else the data directory's context for the role, if there is one;
    else no credentials (a NATS that requires them refuses the connection, clearly). An
    explicit ``--nats-url`` replaces the context's URL.
    """
    if settings.nats_context is not None:
        found = NatsIdentity.from_context(settings.nats_context)
    else:
        path = context_path(settings.data_dir, role)
        anonymous = NatsIdentity(DEFAULT_NATS_URL)
        found = NatsIdentity.from_context(path) if path.is_file() else anonymous
    if settings.nats_url is not None:
        found = replace(found, url=settings.nats_url)
    return found
