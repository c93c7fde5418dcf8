"""Which Host a request may name, and which Origin a browser socket may come from.

DNS rebinding points a name the attacker owns at our address: the browser then sends
``Host: evil.example`` and ``Origin: http://evil.example``, equal to each other, so an Origin
check that compares with the Host admits it. The Host is therefore checked first, against names
from the settings (never from the request), and only then may a same-origin check compare the
Origin with it.

By default (no ``allowed_hosts``, no ``public_url``) the allowed names are those no attacker can
rebind: IP addresses (a page opened by IP has that IP as its origin), ``localhost`` (browsers
pin it to loopback) and the bind host's own name, plus the names of ``allowed_origins``.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from bus.settings import Settings
from experience.errors import error_response

log = logging.getLogger(__name__)

ANY: str = "*"
LOCALHOST = "localhost"
HOST_NOT_ALLOWED = "host_not_allowed"


def host_name(netloc: str) -> str:
    """The name of a ``Host`` value or URL netloc: no port, no brackets, lower case."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    name = netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc
    return name.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True)
class HostPolicy:
    """Allowed host names and origins; empty ``origins`` means same-origin."""

    hosts: frozenset[str]
    origins: frozenset[str] = frozenset()
    ip_addresses: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> HostPolicy:
        """The policy ``settings`` configure, with the defaults the module docstring names."""
        public = urlsplit(settings.public_url) if settings.public_url else None
        origins = frozenset(o.lower().rstrip("/") for o in settings.allowed_origins)
        if not origins and settings.public_url:
            origins = frozenset({_origin_of(settings.public_url)})
        if settings.allowed_hosts:
            return cls(frozenset(host_name(h) for h in settings.allowed_hosts), origins)
        if public is not None and public.hostname:
            return cls(frozenset({public.hostname.lower()}), origins)
        bound = host_name(settings.host)
        names = {LOCALHOST} | ({bound} if bound and not _is_ip(bound) else set())
        # A page allowed to open sockets may also be served by us under its own name.
        names |= {host_name(urlsplit(o).netloc) for o in origins if o != ANY}
        return cls(frozenset(names), origins, ip_addresses=True)

    def host_allowed(self, host: str | None) -> bool:
        """Whether a request addressed to ``host`` (its Host header) is for us.

        No Host at all is not a browser (browsers always send one), so not a rebinding.
        """
        if host is None:
            return True
        name = host_name(host)
        if ANY in self.hosts or name in self.hosts:
            return True
        return self.ip_addresses and _is_ip(name)

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Whether a socket from ``origin`` to ``host`` may open; call after ``host_allowed``.

        No Origin: not a browser, so no page to protect the user from.
        """
        if origin is None:
            return True
        if self.origins:
            return ANY in self.origins or origin.lower().rstrip("/") in self.origins
        return host is not None and urlsplit(origin).netloc.lower() == host.strip().lower()

    def allows(self, headers: Headers) -> bool:
        """Both checks on one request's headers."""
        host = headers.get("host")
        return self.host_allowed(host) and self.origin_allowed(headers.get("origin"), host)


class TrustedHosts:
    """Refuse HTTP requests addressed to a host that is not ours (400, the one error body).

    Sockets pass: the gate refuses them itself with close code 4403, which a browser can read.
    """

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host")
            if not self.policy.host_allowed(host):
                log.info("refused a request for host %r", (host or "")[:100])
                response = error_response(400, HOST_NOT_ALLOWED, "host not allowed")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
