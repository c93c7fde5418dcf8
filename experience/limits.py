"""Request bodies bounded in size and time before any route sees them.

Every route reads small JSON, so the body is read here first, up to ``max_bytes`` and within
``timeout_s``, and handed on whole. A declared ``Content-Length`` over the bound is refused
before a byte of the body is read; a chunked body is refused as soon as its count passes the
bound. The rest of a refused body is never read: the answer says ``Connection: close``.

Heads (request line and header fields) are bounded earlier, by the HTTP protocol in
``experience/server.py``, since a route never sees a head that is too large.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bus.settings import Settings
from experience.errors import error_response

log = logging.getLogger(__name__)

PAYLOAD_TOO_LARGE = "payload_too_large"
REQUEST_TIMEOUT = "request_timeout"


class BodyLimit:
    """Pure ASGI middleware: 413 for a body over ``max_bytes``, 408 for one slower than
    ``timeout_s``; otherwise the app receives the body in one message."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send, 413, PAYLOAD_TOO_LARGE, declared)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # nobody left to answer
                    body = message.get("body", b"")
                    size += len(body)
                    if size > self.max_bytes:
                        await self._refuse(scope, receive, send, 413, PAYLOAD_TOO_LARGE, size)
                        return
                    chunks.append(body)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._refuse(scope, receive, send, 408, REQUEST_TIMEOUT, size)
            return
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, code: str, size: int
    ) -> None:
        if status == 413:
            message = f"request body over {self.max_bytes} bytes"
        else:
            message = f"request body not received within {self.timeout_s:g} s"
        log.info(
            "%s %s refused %d: %s (%d bytes seen)",
            scope["method"],
            scope["path"],
            status,
            message,
            size,
        )
        response = error_response(status, code, message)
        # The rest of the body stays unread, so the connection cannot carry another request.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # The HTTP parser has already refused a Content-Length that is not all digits.
            return int(value) if value.isdigit() else None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then whatever the connection says next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def install(app: FastAPI, settings: Settings) -> None:
    """Bound every request body of ``app`` as ``settings`` say."""
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.http_max_body_bytes,
        timeout_s=settings.http_read_timeout_s,
    )
