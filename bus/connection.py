"""Connecting to NATS with the options every symphainy process wants."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client

log = logging.getLogger(__name__)


def connection_options(name: str) -> dict[str, Any]:
    """Options for nats-py (and FastStream's broker): reconnect forever, log instead of print."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats connection error (%s): %s", name, exc)

    async def on_disconnected() -> None:
        # Also called by a deliberate close; a lost server shows up as connection errors (warnings)
        # while the client reconnects.
        log.info("nats disconnected (%s)", name)

    async def on_reconnected() -> None:
        log.info("nats reconnected (%s)", name)

    callbacks: dict[str, Callable[..., Awaitable[None]]] = {
        "error_cb": on_error,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
    }
    return {
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        **callbacks,
    }


async def connect(url: str, name: str) -> Client:
    """A connected nats-py client that reconnects by itself."""
    return await nats.connect(servers=[url], **connection_options(name))
