"""``/api/auth``: log in (a new server-side session) and log out (revoke it)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from experience.deps import CallerDep, LimiterDep, RuntimeDep, TokensDep
from experience.routes.models import LoginRequest, LoginResponse, UserView, error_responses
from intents import (
    AuthenticateUser,
    AuthenticateUserReply,
    CreateSession,
    CreateSessionReply,
    RevokeSession,
    RevokeSessionReply,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/auth", tags=["auth"])

_ERRORS = error_responses(401, 503)


@router.post("/login", response_model=LoginResponse, responses=error_responses(401, 422, 429, 503))
async def login(
    body: LoginRequest,
    request: Request,
    runtime: RuntimeDep,
    tokens: TokensDep,
    limiter: LimiterDep,
) -> LoginResponse:
    """Check the credentials and open a new session; the same 401 for any bad credential."""
    client = request.client.host if request.client else "unknown"
    # Per address here; per (username, address) and per username the runtime counts, across
    # every Experience process.
    with limiter.attempt(f"ip:{client}"):
        auth = await runtime.ask(
            AuthenticateUser(username=body.username, password=body.password, client_address=client),
            AuthenticateUserReply,
        )
    user = auth.user
    created = await runtime.ask(
        CreateSession(user_id=user.id, username=user.username, actor=f"user:{user.id}"),
        CreateSessionReply,
    )
    session = created.session
    issued = tokens.issue(user.id, session.session_id, session.absolute_expires_at, jti=session.jti)
    log.info(
        "login: user %s opened session %s [%s]",
        user.username,
        session.session_id,
        runtime.correlation_id,
    )
    return LoginResponse(
        session_id=session.session_id,
        session_token=issued.token,
        expires_at=issued.claims.exp,
        user=UserView(id=user.id, username=user.username),
    )


@router.post("/logout", status_code=204, response_class=Response, responses=_ERRORS)
async def logout(caller: CallerDep, runtime: RuntimeDep) -> Response:
    """Revoke the caller's session: its token and sockets stop working at once."""
    await runtime.ask(
        RevokeSession(
            session_id=caller.session_id,
            user_id=caller.user_id,
            reason="logout",
            actor=caller.actor,
        ),
        RevokeSessionReply,
    )
    return Response(status_code=204)
