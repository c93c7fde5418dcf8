"""``/api/session`` and ``/api/sessions``: a user's own sessions."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Response

from experience.deps import CallerDep, RuntimeDep, TokenDep, TokensDep
from experience.routes.models import IssuedSession, RefreshResponse, SessionView, error_responses
from intents import (
    CreateSession,
    CreateSessionReply,
    GetSession,
    GetSessionReply,
    ListSessions,
    ListSessionsReply,
    RefreshSession,
    RefreshSessionReply,
    RevokeSession,
    RevokeSessionReply,
    SessionNotFound,
)

router = APIRouter(tags=["sessions"])

_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
_ERRORS = error_responses(401, 503)
_WITH_404 = error_responses(401, 404, 503)

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
]


def _session_id(value: str) -> str:
    # A string that cannot be a session id names no session: 404, like an absent one.
    if not _SESSION_ID.match(value):
        raise SessionNotFound()
    return value


@router.post(
    "/api/session/create",
    status_code=201,
    response_model=IssuedSession,
    responses=error_responses(401, 422, 503),
)
async def create_session(
    caller: CallerDep,
    runtime: RuntimeDep,
    tokens: TokensDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> IssuedSession:
    """A new session for the caller; a repeated ``Idempotency-Key`` returns the same session."""
    reply = await runtime.ask(
        CreateSession(
            user_id=caller.user_id,
            username=caller.session.username,
            idempotency_key=idempotency_key,
            actor=caller.actor,
        ),
        CreateSessionReply,
    )
    if not reply.created:
        response.headers["Idempotent-Replayed"] = "true"
    session = reply.session
    issued = tokens.issue(caller.user_id, session.session_id, session.absolute_expires_at)
    return IssuedSession(
        session_id=session.session_id, session_token=issued.token, expires_at=issued.claims.exp
    )


@router.get("/api/session/{session_id}", response_model=SessionView, responses=_WITH_404)
async def get_session(session_id: str, caller: CallerDep, runtime: RuntimeDep) -> SessionView:
    """One of the caller's sessions, in any state; 404 for anyone else's."""
    reply = await runtime.ask(
        GetSession(session_id=_session_id(session_id), user_id=caller.user_id, actor=caller.actor),
        GetSessionReply,
    )
    return SessionView.of(reply.session, caller.session_id)


@router.delete(
    "/api/session/{session_id}", status_code=204, response_class=Response, responses=_WITH_404
)
async def revoke_session(session_id: str, caller: CallerDep, runtime: RuntimeDep) -> Response:
    """Revoke one of the caller's sessions; its tokens and sockets stop working at once."""
    await runtime.ask(
        RevokeSession(
            session_id=_session_id(session_id),
            user_id=caller.user_id,
            reason="revoked by user",
            actor=caller.actor,
        ),
        RevokeSessionReply,
    )
    return Response(status_code=204)


@router.get("/api/sessions", response_model=list[SessionView], responses=_ERRORS)
async def list_sessions(caller: CallerDep, runtime: RuntimeDep) -> list[SessionView]:
    """The caller's live sessions, oldest first."""
    reply = await runtime.ask(
        ListSessions(user_id=caller.user_id, actor=caller.actor), ListSessionsReply
    )
    return [SessionView.of(s, caller.session_id) for s in reply.sessions]


@router.post("/api/session/refresh", response_model=RefreshResponse, responses=_WITH_404)
async def refresh_session(
    token: TokenDep, tokens: TokensDep, runtime: RuntimeDep
) -> RefreshResponse:
    """A new token for the same session, its idle expiry extended.

    Accepts a token that expired recently (within the refresh grace), so a client whose socket
    closed with 4408 can refresh once instead of logging in again.
    """
    claims = tokens.verify_for_refresh(token)
    reply = await runtime.ask(
        RefreshSession(session_id=claims.sid, user_id=claims.sub, actor=f"user:{claims.sub}"),
        RefreshSessionReply,
    )
    session = reply.session
    issued = tokens.issue(claims.sub, session.session_id, session.absolute_expires_at)
    return RefreshResponse(
        session_id=session.session_id, session_token=issued.token, expires_at=issued.claims.exp
    )
