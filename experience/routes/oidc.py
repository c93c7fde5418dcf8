"""``/api/auth/oidc``: log in through an OpenID provider (code flow, PKCE, ``state``, ``nonce``).

    browser ──GET /login──────────▶ us: login state in a signed cookie, 303 to the provider
    browser ──signs in, consents──▶ provider: 303 back to /callback?code&state
    browser ──GET /callback───────▶ us: state checked against the cookie, code traded (Authlib),
                                    ID token checked; AuthenticateExternal, CreateSession and
                                    StoreHandover on the bus; 303 to /#handover=<one-time code>
    page    ──POST /exchange──────▶ us: TakeHandover (once), the session token, as a login's

The token never travels in a URL: the fragment holds only the one-time code, which the page
removes from the address bar at once and trades within a minute. When the browser navigates
(``Accept: text/html``), failures go back to the login page as ``/#login_error=<code>``; other
clients get the error body with its status (400 for the login's faults, 502 provider down).
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Cookie, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from experience.deps import SettingsDep, TokensDep, get_runtime
from experience.oidc import OidcProvider
from experience.oidc_state import COOKIE, COOKIE_PATH, TTL, LoginState, LoginStates
from experience.routes.models import LoginResponse, UserView, error_responses
from intents import (
    AuthenticateExternal,
    AuthenticateExternalReply,
    CreateSession,
    CreateSessionReply,
    ExternalLoginFailed,
    LoginCancelled,
    NotFound,
    StoreHandover,
    StoreHandoverReply,
    SymphainyError,
    TakeHandover,
    TakeHandoverReply,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/auth/oidc", tags=["auth"])

CALLBACK_PATH = "/api/auth/oidc/callback"
Param = Annotated[str | None, Query(max_length=2048)]


class OidcConfig(BaseModel):
    """What the web client needs to offer the provider's button."""

    enabled: bool
    provider: str | None = None
    name: str | None = None
    login_url: str | None = None


class ExchangeRequest(BaseModel):
    """The one-time code from ``/#handover=``."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=16, max_length=128)


def _providers(request: Request) -> dict[str, OidcProvider]:
    providers: dict[str, OidcProvider] = request.app.state.oidc
    return providers


def _provider(request: Request) -> OidcProvider:
    # One provider for now; with several, the id comes from the path or the login state.
    for provider in _providers(request).values():
        return provider
    raise NotFound("OpenID Connect login is not configured")


def _states(request: Request) -> LoginStates:
    states: LoginStates = request.app.state.oidc_states
    return states


def _base(request: Request, settings: SettingsDep) -> str:
    return (settings.public_url or str(request.base_url)).rstrip("/")


def _navigating(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _login_page(base: str, **fragment: str) -> RedirectResponse:
    return RedirectResponse(f"{base}/#{urlencode(fragment)}", status_code=303)


@router.get("/config", response_model=OidcConfig)
async def config(request: Request) -> OidcConfig:
    """Whether a provider is configured, and its name; never asks the provider."""
    providers = _providers(request)
    if not providers:
        return OidcConfig(enabled=False)
    provider = next(iter(providers.values()))
    return OidcConfig(
        enabled=True,
        provider=provider.config.id,
        name=provider.config.name,
        login_url=str(request.app.url_path_for("oidc_login")),
    )


@router.get("/login", name="oidc_login", status_code=303, responses=error_responses(404, 502))
async def login(request: Request, settings: SettingsDep) -> Response:
    """Start a login: remember state, nonce and PKCE verifier in a cookie, go to the provider."""
    provider = _provider(request)
    base = _base(request, settings)
    started = LoginState.new(provider.config.id)
    try:
        async with provider.deadline():
            url = await provider.authorization_url(
                base + CALLBACK_PATH, started.state, started.nonce, started.verifier
            )
    except SymphainyError as exc:
        if _navigating(request):
            log.info("oidc login not started: %s", exc.code)
            return _login_page(base, login_error=exc.code)
        raise
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        COOKIE,
        _states(request).seal(started),
        max_age=int(TTL.total_seconds()),
        path=COOKIE_PATH,
        secure=base.startswith("https://"),
        httponly=True,
        samesite="lax",
    )
    return response


# Not in the OpenAPI document: only the provider sends browsers here, with parameters of its own
# making (an authorization code may be a kilobyte or more), so it is no API for clients.
@router.get("/callback", status_code=303, include_in_schema=False)
async def callback(
    request: Request,
    settings: SettingsDep,
    code: Param = None,
    state: Param = None,
    error: Param = None,
    login_cookie: Annotated[str | None, Cookie(alias=COOKIE)] = None,
) -> Response:
    """Finish a login: check, trade, map the identity, open a session, hand it to the page."""
    provider = _provider(request)
    base = _base(request, settings)
    try:
        response = await _finish(request, provider, base, code, state, error, login_cookie)
    except SymphainyError as exc:
        log.info("oidc login failed: %s: %s", exc.code, exc.message)
        if not _navigating(request):
            raise
        response = _login_page(base, login_error=exc.code)
    # Whatever happened, this login's state is spent.
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")
    return response


async def _finish(
    request: Request,
    provider: OidcProvider,
    base: str,
    code: str | None,
    state: str | None,
    error: str | None,
    login_cookie: str | None,
) -> Response:
    if error == "access_denied":
        raise LoginCancelled()
    if error is not None:
        raise ExternalLoginFailed(f"the identity provider answered {error[:64]!r}")
    login = _states(request).open(login_cookie, state)
    if not code or login.provider != provider.config.id:
        raise ExternalLoginFailed("the identity provider sent no authorization code")
    async with provider.deadline():
        identity = await provider.finish(code, base + CALLBACK_PATH, login.verifier, login.nonce)
    # The runtime's deadline starts now, not with the provider's round trips.
    runtime = get_runtime(request)
    found = await runtime.ask(
        AuthenticateExternal(
            issuer=identity.issuer,
            sub=identity.sub,
            email=identity.email,
            name=identity.name,
            preferred_username=identity.preferred_username,
            actor=f"oidc:{provider.config.id}",
        ),
        AuthenticateExternalReply,
    )
    user = found.user
    created = await runtime.ask(
        CreateSession(user_id=user.id, username=user.username, actor=f"user:{user.id}"),
        CreateSessionReply,
    )
    session = created.session
    handover = await runtime.ask(
        StoreHandover(
            session_id=session.session_id,
            user_id=user.id,
            username=user.username,
            jti=session.jti,
            expires_at=session.absolute_expires_at,
            actor=f"user:{user.id}",
        ),
        StoreHandoverReply,
    )
    log.info(
        "oidc login: user %s (%s) opened session %s [%s]",
        user.username,
        "new" if found.created else "known",
        session.session_id,
        runtime.correlation_id,
    )
    return _login_page(base, handover=handover.code)


@router.post("/exchange", response_model=LoginResponse, responses=error_responses(401, 422, 503))
async def exchange(body: ExchangeRequest, request: Request, tokens: TokensDep) -> LoginResponse:
    """Trade the one-time code of ``/#handover=`` for the session token, once."""
    runtime = get_runtime(request)
    taken = await runtime.ask(TakeHandover(code=body.code), TakeHandoverReply)
    issued = tokens.issue(taken.user_id, taken.session_id, taken.expires_at, jti=taken.jti)
    return LoginResponse(
        session_id=taken.session_id,
        session_token=issued.token,
        expires_at=issued.claims.exp,
        user=UserView(id=taken.user_id, username=taken.username),
    )


@router.get("/logout", status_code=303, responses=error_responses(404))
async def logout(request: Request, settings: SettingsDep) -> Response:
    """Sign out at the provider too (RP-initiated logout), then back to the login page.

    Our session is revoked by ``POST /api/auth/logout``; a provider that advertises no
    ``end_session_endpoint`` (or is down) sends the browser straight back.
    """
    provider = _provider(request)
    base = _base(request, settings)
    try:
        async with provider.deadline():
            url = await provider.logout_url(base + "/")
    except SymphainyError as exc:
        log.info("oidc logout at the provider skipped: %s", exc.code)
        url = None
    return RedirectResponse(url or base + "/", status_code=303)
