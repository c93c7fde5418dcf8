"""HTTP faces of the error tree: one status per error class, one JSON body shape.

Bodies are ``{"error": {"code": "...", "message": "..."}}`` with the error tree's stable codes.
Every rejection is logged with its reason and correlation id, never with a token.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from intents import (
    AuthenticationFailed,
    Conflict,
    DeadlineExceeded,
    ExternalLoginFailed,
    HandoverInvalid,
    InvalidIntent,
    NotFound,
    ProviderUnavailable,
    RateLimited,
    RuntimeUnavailable,
    SessionInactive,
    SymphainyError,
    TokenExpired,
    TokenInvalid,
    WriteConflict,
)

log = logging.getLogger(__name__)

# Most specific first: the first matching class decides the status.
STATUS_BY_ERROR: tuple[tuple[type[SymphainyError], int], ...] = (
    (InvalidIntent, 422),
    (AuthenticationFailed, 401),
    (TokenInvalid, 401),
    (TokenExpired, 401),
    (SessionInactive, 401),
    (NotFound, 404),
    (WriteConflict, 503),
    (Conflict, 409),
    # A made-up, used or expired handover code is a credential that does not work, like a
    # wrong password; the other faults of a login through a provider are bad requests.
    (HandoverInvalid, 401),
    (ExternalLoginFailed, 400),
    (ProviderUnavailable, 502),
    (RateLimited, 429),
    (RuntimeUnavailable, 503),
    (DeadlineExceeded, 503),
)

_STARLETTE_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class Unauthorized(Exception):
    """A Bearer call whose token or session no longer works: 401 whatever the cause."""

    def __init__(self, error: SymphainyError) -> None:
        super().__init__(error.message)
        self.error = error


def status_for(exc: SymphainyError) -> int:
    """The HTTP status for one of our errors (500 for the base class: a bug, not bad input)."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(
    status: int, code: str, message: str, retry_after: int | None = None
) -> JSONResponse:
    """The one error body."""
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _correlation(request: Request) -> str:
    return str(getattr(request.state, "correlation_id", "-"))


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves at this request's path.

    Starlette's 405 names only the methods of the first route that matched the path, so a path
    served by two routes (GET and DELETE ``/api/session/{id}``) would advertise one of them.
    """
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**scope, "method": method})[0] is Match.FULL
            for route in app.router.routes
        )
    ]


def install(app: FastAPI, retry_after_s: int) -> None:
    """Register the handlers that turn every failure into the one body shape."""

    def render(request: Request, exc: SymphainyError, status: int) -> JSONResponse:
        retry_after = None
        if status in (429, 503):
            retry_after = exc.retry_after or retry_after_s
        if status >= 500 and not exc.retryable:
            log.error(
                "%s %s failed: %s [%s]",
                request.method,
                request.url.path,
                exc.code,
                _correlation(request),
            )
            return error_response(500, "internal", "internal error")
        log.info(
            "%s %s rejected %d %s: %s [%s]",
            request.method,
            request.url.path,
            status,
            exc.code,
            exc.message,
            _correlation(request),
        )
        return error_response(status, exc.code, exc.message, retry_after)

    async def on_ours(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SymphainyError)
        return render(request, exc, status_for(exc))

    async def on_unauthorized(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Unauthorized)
        status = 503 if isinstance(exc.error, RuntimeUnavailable) else 401
        return render(request, exc.error, status)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        log.info(
            "%s %s rejected 422: %s [%s]",
            request.method,
            request.url.path,
            problems,
            _correlation(request),
        )
        return error_response(422, "invalid_request", problems or "invalid request")

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # FastAPI's answer to a body it could not decode (not UTF-8, say): invalid input,
            # answered like every other invalid input.
            log.info(
                "%s %s rejected 422: %s [%s]",
                request.method,
                request.url.path,
                exc.detail,
                _correlation(request),
            )
            return error_response(422, "invalid_request", str(exc.detail))
        code = _STARLETTE_CODES.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if exc.status_code == 405:
            allowed = allowed_methods(request.app, request.scope)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s crashed [%s]", request.method, request.url.path, _correlation(request))
        return error_response(500, "internal", "internal error")

    app.add_exception_handler(SymphainyError, on_ours)
    app.add_exception_handler(Unauthorized, on_unauthorized)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_bug)
