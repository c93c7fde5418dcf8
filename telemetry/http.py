"""The Experience Plane's HTTP telemetry: two pure ASGI middlewares.

``HttpMetrics`` counts and times requests by route template, method and status. ``HttpTracing``
(added only when traces are on) makes a server span per request and per WebSocket's lifetime.

The route is the matched route's template without its convertors (``/api/session/{session_id}``),
which the router leaves in the scope, never the raw path: one label value per session id would
grow the series without bound. Requests no route matched (404, a refused Host) are
``unmatched``; methods outside the standard few are ``other``, likewise.
"""

from __future__ import annotations

import re
from time import perf_counter
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.semconv.attributes import (
    client_attributes,
    error_attributes,
    http_attributes,
    network_attributes,
    server_attributes,
    url_attributes,
    user_agent_attributes,
)
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from telemetry import metrics
from telemetry.record import Children

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_requests = Children(metrics.HTTP_REQUESTS)
_seconds = Children(metrics.HTTP_SECONDS)


def route_of(scope: Scope) -> str | None:
    """The template of the route the router matched, if it matched one."""
    return getattr(scope.get("route"), "path_format", None)


class ResponseStatus:
    """``send``, noting the status the response starts with on its way out."""

    __slots__ = ("code", "send")

    def __init__(self, send: Send, code: int) -> None:
        self.send = send
        self.code = code  # until the response starts

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.code = message["status"]
        await self.send(message)


class HttpMetrics:
    """Counts and times every HTTP request; WebSockets pass through (the gate counts those)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        # If the app fails before it answers, the server answers 500.
        status = ResponseStatus(send, 500)
        try:
            await self.app(scope, receive, status)
        finally:
            self._record(scope, status.code, perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = route_of(scope) or UNMATCHED
        method = scope["method"] if scope["method"] in METHODS else "other"
        _requests(route, method, str(status)).inc()
        _seconds(route, method).observe(seconds)


class HttpTracing:
    """A server span per HTTP request and per WebSocket (its whole life, current while it runs),
    child of the caller's ``traceparent`` if it sent one.

    Named ``{method} {route}`` (a WebSocket: its route) once the router has matched, with
    OpenTelemetry's stable HTTP attributes (``http.request.method``, ``http.route``,
    ``http.response.status_code``, ``url.path``, ``server.address``...); the query string is not
    recorded (an OpenID Connect callback carries its code there). Paths matching ``excluded``
    (a regex, searched) are not traced. A request the sampler drops costs its sampling decision
    and nothing else: attributes are gathered only for a span that records.
    """

    def __init__(self, app: ASGIApp, tracer: Tracer, excluded: re.Pattern[str] | None) -> None:
        self.app = app
        self._tracer = tracer
        self._excluded = excluded
        self._fields = frozenset(f.encode() for f in propagate.get_global_textmap().fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        if self._excluded is not None and self._excluded.search(scope["path"]):
            await self.app(scope, receive, send)
            return
        method = scope["method"] if kind == "http" else "GET"
        span = self._tracer.start_span(
            method if kind == "http" else "websocket",
            context=self._parent(scope),
            kind=SpanKind.SERVER,
        )
        token = context.attach(trace.set_span_in_context(span))
        try:
            if not span.is_recording():
                await self.app(scope, receive, send)
                return
            span.set_attributes(_request_attributes(scope, method))
            status = ResponseStatus(send, 0)
            try:
                await self.app(scope, receive, status if kind == "http" else send)
            except BaseException as exc:
                span.record_exception(exc)
                status.code = status.code or 500
                raise
            finally:
                _finish(span, scope, kind, method, status.code)
        finally:
            context.detach(token)
            span.end()

    def _parent(self, scope: Scope) -> context.Context:
        carrier = {
            name.decode(): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in self._fields
        }
        return propagate.extract(carrier) if carrier else _NO_PARENT


_NO_PARENT = context.Context()


def _request_attributes(scope: Scope, method: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        http_attributes.HTTP_REQUEST_METHOD: method,
        url_attributes.URL_SCHEME: scope.get("scheme", "http"),
        url_attributes.URL_PATH: scope["path"],
        network_attributes.NETWORK_PROTOCOL_VERSION: scope.get("http_version", "1.1"),
    }
    server = scope.get("server")
    if server:
        attributes[server_attributes.SERVER_ADDRESS] = server[0]
        if server[1] is not None:
            attributes[server_attributes.SERVER_PORT] = server[1]
    client = scope.get("client")
    if client:
        attributes[client_attributes.CLIENT_ADDRESS] = client[0]
    for name, value in scope["headers"]:
        if name == b"user-agent":
            attributes[user_agent_attributes.USER_AGENT_ORIGINAL] = value.decode("latin-1")
            break
    return attributes


def _finish(span: trace.Span, scope: Scope, kind: str, method: str, status: int) -> None:
    route = route_of(scope)
    if route is not None:
        span.update_name(f"{method} {route}" if kind == "http" else route)
        span.set_attribute(http_attributes.HTTP_ROUTE, route)
    if status:
        span.set_attribute(http_attributes.HTTP_RESPONSE_STATUS_CODE, status)
    if status >= 500:
        span.set_attribute(error_attributes.ERROR_TYPE, str(status))
        span.set_status(Status(StatusCode.ERROR))
