"""Serving the Experience Plane with uvicorn: bounded request heads, and 1001 on shutdown.

Plain uvicorn fails open WebSockets with 1012 when it stops; this server first asks the gate to
close every socket with 1001 (going away) and drain, then lets uvicorn finish.

The HTTP and WebSocket implementations are pinned, not left to what happens to be installed:
``h11``, wrapped so that every request head is bounded in bytes, field count and time before
anyone reads it (``httptools`` reads heads of any size), and ``wsproto``, which hands every
handshake to the app (the gate answers it). uvicorn's default, ``websockets-sansio``, re-parses
the handshake with its own limits (8 KB a line, 128 fields) and, refusing one, never sends the
refusal: the socket stays open, unanswered, until the client gives up. (``websockets``, the
legacy one, answers, but is deprecated.)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from http import HTTPStatus
from typing import Any, ClassVar

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from uvicorn.server import ServerState
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection

from bus.settings import Settings
from experience.errors import error_response
from experience.routes.agent import SocketsFirst


class _BoundedConnection(h11.Connection):
    """h11's server side, refusing a head over ``max_bytes`` or ``max_fields`` with a 431.

    h11 alone bounds only a head still incomplete (its buffer), so a large head that arrives in
    one read would pass: the complete head is measured too.
    """

    def __init__(self, max_bytes: int, max_fields: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_bytes)
        self.max_bytes = max_bytes
        self.max_fields = max_fields
        self.refusal = HTTPStatus.BAD_REQUEST

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal = HTTPStatus(exc.error_status_hint)
            raise
        if isinstance(event, h11.Request):
            fields = list(event.headers.raw_items())
            size = len(event.method) + len(event.target) + sum(len(n) + len(v) for n, v in fields)
            if len(fields) > self.max_fields or size > self.max_bytes:
                self.refusal = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event


_REFUSALS = {
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: ("headers_too_large", "request head too large"),
    HTTPStatus.REQUEST_TIMEOUT: ("request_timeout", "request head not received in time"),
}


def _refusal(status: HTTPStatus) -> bytes:
    """A whole HTTP response with the one error body, for the protocol to write and close."""
    code, message = _REFUSALS.get(status, ("bad_request", "malformed HTTP request"))
    response = error_response(status, code, message)
    response.headers["Connection"] = "close"
    head = [f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()]
    head += [name + b": " + value + b"\r\n" for name, value in response.raw_headers]
    return b"".join(head) + b"\r\n" + response.body


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with each request head bounded in bytes, fields and time.

    A head over the bounds is answered 431, a malformed one 400, one not complete within
    ``head_timeout_s`` of the connection (or of its first byte, on a kept-alive connection) 408;
    each with the error body, then the connection is closed.
    """

    max_header_bytes: ClassVar[int] = 16 * 1024
    max_headers: ClassVar[int] = 100
    head_timeout_s: ClassVar[float] = 10.0

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._bounded = _BoundedConnection(self.max_header_bytes, self.max_headers)
        self.conn = self._bounded
        self._head_deadline: asyncio.TimerHandle | None = None

    @classmethod
    def bounded(cls, settings: Settings) -> type[BoundedH11Protocol]:
        """This protocol with the bounds of ``settings``."""
        return type(
            cls.__name__,
            (cls,),
            {
                "max_header_bytes": settings.http_max_header_bytes,
                "max_headers": settings.http_max_headers,
                "head_timeout_s": settings.http_read_timeout_s,
            },
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        self._await_head()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._stop_waiting()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """Answer a refused head with its own status (uvicorn says 400 to all) and our body."""
        self._stop_waiting()
        self.transport.write(_refusal(self._bounded.refusal))
        self.transport.close()

    def _await_head(self) -> None:
        if self._head_deadline is None and self.conn.their_state is h11.IDLE:
            self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_late)

    def _stop_waiting(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_late(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("request head not received within %gs", self.head_timeout_s)
            self.transport.write(_refusal(HTTPStatus.REQUEST_TIMEOUT))
            self.transport.close()


class WsprotoProtocol(WSProtocol):
    """uvicorn's wsproto protocol, sending the close frame for a frame that fails to parse.

    wsproto reports such a frame (text that is not UTF-8: 1007, a protocol error: 1002) as a
    close from the peer, the connection still open; uvicorn then drops the connection without
    the close frame RFC 6455 asks for, and the client never learns why.
    """

    def handle_close(self, event: CloseConnection) -> None:
        if not self.close_sent and self.conn.state is ConnectionState.OPEN:
            failure = CloseConnection(code=event.code, reason=event.reason)
            self.transport.write(self.conn.send(failure))
        super().handle_close(event)


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
    """A server for ``app`` with bounded requests, the gate's keep-alive pings and frame limit."""
    config = uvicorn.Config(
        SocketsFirst(app),
        host=host,
        port=port,
        http=BoundedH11Protocol.bounded(settings),
        ws=WsprotoProtocol,
        h11_max_incomplete_event_size=settings.http_max_header_bytes,
        timeout_keep_alive=settings.http_keep_alive_s,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ws_max_size=settings.ws_max_frame_bytes,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        log_config=None,
        access_log=True,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=max(1, int(settings.ws_drain_timeout_s) + 1),
        lifespan="on",
    )
    return ExperienceServer(config, app, handle_signals=handle_signals)
