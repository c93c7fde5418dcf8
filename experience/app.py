"""The Experience Plane: HTTP and WebSocket in, typed intents on NATS out.

``create_app(settings)`` builds the FastAPI app. Its lifespan connects to NATS, loads the
signing keys (from settings, or the data dir), and starts the WebSocket gate.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bus import names
from bus.connection import BusGuard, connect
from bus.identity import identity_for
from bus.permissions import Role
from bus.settings import Settings
from experience import errors, hosts, keys, limits, logs, oidc
from experience.gate.gate import Gate
from experience.oidc_state import LoginStates
from experience.ratelimit import LoginLimiter
from experience.routes import agent, asyncapi, auth, health, sessions
from experience.routes import oidc as oidc_routes
from experience.routes.models import error_responses
from experience.tokens import Tokens
from intents import new_id
from telemetry import context, tracing
from telemetry.http import HttpMetrics
from telemetry.record import reconnected

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
_CORRELATION = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class CorrelationMiddleware:
    """Give each HTTP request a correlation id (the caller's, if sane) and echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = names.CORRELATION_HEADER.lower().encode()
        given = dict(scope["headers"]).get(header, b"").decode("latin-1")
        correlation_id = given if _CORRELATION.match(given) else new_id()
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        tracing.set_correlation(correlation_id)
        context.correlation_id.set(correlation_id)  # this request's task only: log lines carry it

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (header, correlation_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(settings: Settings) -> FastAPI:
    """The Experience Plane for ``settings``."""
    settings = keys.resolve(settings)
    tokens = Tokens.from_settings(settings)
    logs.install()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        identity = identity_for(settings, Role.EXPERIENCE)
        guard = BusGuard(identity)
        nc = await connect(
            identity,
            f"symphainy-experience-{new_id()[:8]}",
            guard,
            lambda: reconnected(Role.EXPERIENCE.value),
        )
        gate = Gate(settings, nc, tokens.verify)
        app.state.nc = nc
        app.state.gate = gate
        try:
            await guard.run(gate.start())
            await nc.flush()  # a refused subscription is reported before the flush returns
            guard.check()
            log.info("experience plane connected to %s", identity.url)
            yield
        finally:
            await gate.stop()
            await nc.drain()

    app = FastAPI(
        title="symphainy",
        summary="Sessions and intents over NATS",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tokens = tokens
    app.state.limiter = LoginLimiter(settings.login_rate_limit, settings.login_rate_window_s)
    app.state.oidc = oidc.providers(settings)
    app.state.oidc_states = LoginStates(tokens.keyring, settings.jwt_audience)
    errors.install(app, settings.retry_after_s)
    # Error statuses every operation of a router can answer, on top of those a route lists (the
    # 422 also replaces FastAPI's default one, whose body is not ours; 413 is experience/limits).
    app.include_router(auth.router, responses=error_responses(413, 503))
    app.include_router(oidc_routes.router, responses=error_responses(413, 431))
    app.include_router(sessions.router, responses=error_responses(401, 413, 422, 503))
    app.include_router(health.router)
    app.include_router(agent.router)
    app.include_router(asyncapi.router)
    limits.install(app, settings)
    app.add_middleware(CorrelationMiddleware)
    app.add_middleware(hosts.TrustedHosts, policy=hosts.HostPolicy.from_settings(settings))
    app.add_middleware(HttpMetrics)  # outermost: refused hosts and oversized bodies count too
    serve_web_client(app)
    tracing.instrument_app(app)
    return app


def serve_web_client(app: FastAPI) -> None:
    """The web client at ``/`` and each of its files at ``/<name>``, GET and HEAD only.

    Exact routes, not a mount at ``/``: a catch-all mount would also match every API path and
    answer a wrong method there with its own ``405 Allow: GET, HEAD``.
    """
    if not STATIC_DIR.is_dir():
        return
    files = StaticFiles(directory=STATIC_DIR, html=True)

    async def web_client(request: Request) -> Response:
        # StaticFiles answers conditional requests (ETag, Last-Modified) with 304.
        return await files.get_response(files.get_path(request.scope), request.scope)

    paths = ["/", *(f"/{f.name}" for f in sorted(STATIC_DIR.iterdir()) if f.is_file())]
    for path in paths:
        app.add_route(path, web_client, methods=["GET"], name="web", include_in_schema=False)
