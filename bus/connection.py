"""Connecting to NATS as one identity, with the options every symphainy process wants.

nats-server reports a refused login or a denied subject asynchronously (an ``-ERR`` line): a
denied request would simply never be answered. ``BusGuard`` turns those reports into a
``PermissionDenied`` raised at once from whatever was waiting, naming the subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.errors import AuthorizationError

from bus.identity import NatsIdentity

log = logging.getLogger(__name__)

T = TypeVar("T")

PERMISSIONS_VIOLATION = "permissions violation"
AUTHORIZATION_VIOLATION = "authorization violation"


class PermissionDenied(Exception):
    """nats-server refused this identity, or one thing it tried; the message says which."""


class BusGuard:
    """Collects what nats-server refused on one connection and fails waiting calls with it."""

    def __init__(self, identity: NatsIdentity) -> None:
        self.identity = identity
        self.refused: str | None = None
        self._event = asyncio.Event()

    def record(self, exc: Exception) -> bool:
        """Note a refusal; whether ``exc`` was one."""
        # A refused login is an AuthorizationError once connected, a plain Error while connecting.
        if isinstance(exc, AuthorizationError) or AUTHORIZATION_VIOLATION in str(exc).lower():
            who = self.identity.user or "anonymous"
            self._refuse(f"NATS at {self.identity.url} refused the credentials of {who!r}")
            return True
        if PERMISSIONS_VIOLATION in str(exc).lower():
            who = self.identity.user or "anonymous"
            self._refuse(f"NATS user {who!r} lacks a permission: {str(exc).removeprefix('nats: ')}")
            return True
        return False

    def _refuse(self, message: str) -> None:
        if self.refused is None:
            self.refused = message
        self._event.set()

    async def run(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``, or raise ``PermissionDenied`` as soon as NATS refuses something."""
        work = asyncio.ensure_future(awaitable)
        refused = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({work, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
        if self.refused is not None:
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            raise PermissionDenied(self.refused)
        return work.result()

    async def refusal(self, timeout: float) -> str | None:
        """What was refused, waiting up to ``timeout`` for a refusal to be reported."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        return self.refused

    def check(self) -> None:
        """Raise ``PermissionDenied`` if anything was refused so far."""
        if self.refused is not None:
            raise PermissionDenied(self.refused)


def connection_options(
    name: str,
    identity: NatsIdentity,
    guard: BusGuard | None = None,
    on_reconnect: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Options for nats-py: the identity, reconnect forever, log instead of print.

    FastStream's broker takes the same, as a security object (``runtime_worker.app``).
    ``on_reconnect`` is told of every reconnection (the components count them in metrics).
    """

    async def on_error(exc: Exception) -> None:
        if guard is not None and guard.record(exc):
            log.error("%s", guard.refused)
            return
        log.warning("nats connection error (%s): %s", name, exc)

    async def on_disconnected() -> None:
        # Also called by a deliberate close; a lost server shows up as connection errors (warnings)
        # while the client reconnects.
        log.info("nats disconnected (%s)", name)

    async def on_reconnected() -> None:
        log.info("nats reconnected (%s)", name)
        if on_reconnect is not None:
            on_reconnect()

    callbacks: dict[str, Callable[..., Awaitable[None]]] = {
        "error_cb": on_error,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
    }
    return {
        **identity.nats_options(),
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        **callbacks,
    }


async def connect(
    identity: NatsIdentity,
    name: str,
    guard: BusGuard | None = None,
    on_reconnect: Callable[[], None] | None = None,
) -> Client:
    """A connected nats-py client that reconnects by itself; refused credentials raise at once."""
    guard = guard or BusGuard(identity)
    nc = Client()
    try:
        await guard.run(nc.connect(**connection_options(name, identity, guard, on_reconnect)))
    except BaseException:
        await nc.close()
        raise
    return nc
