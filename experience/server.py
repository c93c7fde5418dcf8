"""Serving the Experience Plane with uvicorn, so that shutdown closes sockets with 1001.

Plain uvicorn fails open WebSockets with 1012 when it stops; this server first asks the gate to
close every socket with 1001 (going away) and drain, then lets uvicorn finish.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI

from bus.settings import Settings


class ExperienceServer(uvicorn.Server):
    """uvicorn, with a gate drain before its own shutdown."""

    def __init__(
        self, config: uvicorn.Config, app: FastAPI, *, handle_signals: bool = True
    ) -> None:
        super().__init__(config)
        self._app = app
        self._handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's signal handling, unless the caller handles signals for the whole process."""
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Drain the gate (1001 to every socket), then shut down as uvicorn does."""
        gate = getattr(self._app.state, "gate", None)
        if gate is not None:
            await gate.stop()
        await super().shutdown(sockets)

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return int(self.servers[0].sockets[0].getsockname()[1])


def build_server(
    app: FastAPI, settings: Settings, host: str, port: int, *, handle_signals: bool = True
) -> ExperienceServer:
    """A server for ``app`` with the gate's keep-alive pings and frame size limit."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ws_max_size=settings.ws_max_frame_bytes,
        log_config=None,
        access_log=True,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=max(1, int(settings.ws_drain_timeout_s) + 1),
        lifespan="on",
    )
    return ExperienceServer(config, app, handle_signals=handle_signals)
