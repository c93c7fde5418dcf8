"""HTTP requests by route template, method and status: a pure ASGI middleware.

The route label is the matched route's template without its convertors
(``/api/session/{session_id}``), which the router leaves in the scope, never the raw path: one
label value per session id would grow the series without bound. Requests no route matched (404,
a refused Host) are ``unmatched``; methods outside the standard few are ``other``, likewise.
"""

from __future__ import annotations

from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from telemetry import metrics
from telemetry.record import Children

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_requests = Children(metrics.HTTP_REQUESTS)
_seconds = Children(metrics.HTTP_SECONDS)


class HttpMetrics:
    """Counts and times every HTTP request; WebSockets pass through (the gate counts those)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500  # if the app fails before it answers, the server answers 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._record(scope, status, perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path_format", None) or UNMATCHED
        method = scope["method"] if scope["method"] in METHODS else "other"
        _requests(route, method, str(status)).inc()
        _seconds(route, method).observe(seconds)
