"""``/api/session`` and ``/api/sessions``: a user's own sessions.

Every token is signed with the ``jti`` the runtime recorded on the session, so a refresh makes
every earlier token of the session useless (see ``intents.session``).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Response

from experience.deps import CallerDep, RuntimeDep, TokenDep, TokensDep
from experience.routes.models import (
    SESSION_PATH,
    IssuedSession,
    RefreshResponse,
    SessionId,
    SessionView,
    error_responses,
)
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
    SessionState,
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
    """A new session for the caller; a repeated ``Idempotency-Key`` returns the same session.

    Past ``max_sessions_per_user`` live sessions, the caller's oldest are revoked.
    """
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
    issued = tokens.issue(
        caller.user_id, session.session_id, session.absolute_expires_at, jti=session.jti
    )
    return IssuedSession(
        session_id=session.session_id, session_token=issued.token, expires_at=issued.claims.exp
    )


@router.get(SESSION_PATH, response_model=SessionView, responses=_WITH_404)
async def get_session(session_id: SessionId, caller: CallerDep, runtime: RuntimeDep) -> SessionView:
    """One of the caller's sessions, active or expired; 404 if revoked or anyone else's."""
    reply = await runtime.ask(
        GetSession(session_id=_session_id(session_id), user_id=caller.user_id, actor=caller.actor),
        GetSessionReply,
    )
    # A revoked session is gone for its owner: GET after DELETE is 404, as for any resource.
    if reply.session.state is SessionState.REVOKED:
        raise SessionNotFound()
    return SessionView.of(reply.session, caller.session_id)


@router.delete(SESSION_PATH, status_code=204, response_class=Response, responses=_WITH_404)
async def revoke_session(session_id: SessionId, caller: CallerDep, runtime: RuntimeDep) -> Response:
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
    """A new token for the same session, its idle expiry extended; every earlier token dies.

    Accepts a token that expired recently (within ``refresh_grace_s``), so a client whose socket
    closed with 4408 can refresh once instead of logging in again. A token that an earlier
    refresh replaced revokes the session (401 ``session_revoked``): it has been copied.
    """
    claims = tokens.verify_for_refresh(token)
    reply = await runtime.ask(
        RefreshSession(
            session_id=claims.sid, user_id=claims.sub, jti=claims.jti, actor=f"user:{claims.sub}"
        ),
        RefreshSessionReply,
    )
    session = reply.session
    issued = tokens.issue(
        claims.sub, session.session_id, session.absolute_expires_at, jti=session.jti
    )
    return RefreshResponse(
        session_id=session.session_id, session_token=issued.token, expires_at=issued.claims.exp
    )
