"""Admission of a socket, all before any application message.

Order: Host and Origin allowlists (``experience.hosts``), credentials present and well-formed,
token signature and claims, then a ``VerifySession`` request-reply to the runtime. Each failure
maps to one close code.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from urllib.parse import parse_qs

from nats.aio.client import Client
from starlette.datastructures import Headers
from starlette.types import Scope

from experience.gate.protocol import BEARER_PREFIX, SUBPROTOCOL, TOKEN_QUERY_PARAM, CloseCode
from experience.hosts import HostPolicy
from intents import (
    RuntimeUnavailable,
    SessionExpired,
    SessionInactive,
    SessionNotFound,
    SymphainyError,
    TokenExpired,
    TokenInvalid,
    VerifySession,
    VerifySessionReply,
)
from intents.request import request

log = logging.getLogger(__name__)


class Claims(Protocol):
    """What the gate needs from a verified token."""

    @property
    def sub(self) -> str: ...

    @property
    def sid(self) -> str: ...

    @property
    def jti(self) -> str: ...

    @property
    def exp(self) -> datetime: ...


TokenVerifier = Callable[[str], Claims]


@dataclass(frozen=True)
class Admitted:
    """A socket that may be accepted."""

    subprotocol: str | None
    claims: Claims
    session: VerifySessionReply

    @property
    def deadline(self) -> datetime:
        """When the socket must be re-checked: the token's or the session's expiry."""
        return min(self.claims.exp, self.session.expires_at)


@dataclass(frozen=True)
class Rejected:
    """A socket to accept only to close at once with ``code``."""

    code: CloseCode
    reason: str
    subprotocol: str | None


class Malformed(Exception):
    """The handshake is not one we speak."""


def read_credentials(scope: Scope) -> tuple[str | None, str | None]:
    """(subprotocol to answer with, token) from the subprotocol pair or the query string."""
    offered: Sequence[str] = scope.get("subprotocols") or []
    chosen = SUBPROTOCOL if SUBPROTOCOL in offered else None
    bearers = [p[len(BEARER_PREFIX) :] for p in offered if p.startswith(BEARER_PREFIX)]
    if offered and chosen is None:
        raise Malformed(f"subprotocol {SUBPROTOCOL} not offered")
    if len(bearers) > 1:
        raise Malformed("more than one bearer subprotocol")
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    from_query = query.get(TOKEN_QUERY_PARAM, [])
    if len(from_query) > 1:
        raise Malformed("more than one session_token parameter")
    token = bearers[0] if bearers else (from_query[0] if from_query else None)
    return chosen, token or None


async def admit(
    scope: Scope,
    nc: Client,
    verify_token: TokenVerifier,
    hosts: HostPolicy,
    timeout: float,
    correlation_id: str,
    watching: Callable[[], Awaitable[bool]] | None = None,
) -> Admitted | Rejected:
    """Decide whether the socket of ``scope`` may be accepted; never raises.

    ``watching`` says whether revocations will reach this gate; it is asked after the token
    verifies and before the session is: a session revoked after its check must not go unseen.
    """
    headers = Headers(scope=scope)
    try:
        subprotocol, token = read_credentials(scope)
    except Malformed as exc:
        offered = scope.get("subprotocols") or []
        return Rejected(
            CloseCode.MALFORMED, str(exc), SUBPROTOCOL if SUBPROTOCOL in offered else None
        )
    if not hosts.allows(headers):
        return Rejected(CloseCode.ORIGIN_FORBIDDEN, "host or origin not allowed", subprotocol)
    if token is None:
        return Rejected(CloseCode.TOKEN_INVALID, "token missing", subprotocol)
    try:
        claims = verify_token(token)
    except TokenExpired:
        return Rejected(CloseCode.EXPIRED, "token expired", subprotocol)
    except TokenInvalid:
        return Rejected(CloseCode.TOKEN_INVALID, "token invalid", subprotocol)
    if watching is not None and not await watching():
        return Rejected(CloseCode.RUNTIME_UNAVAILABLE, "sessions not watched yet", subprotocol)
    try:
        session = await request(
            nc,
            VerifySession(
                session_id=claims.sid,
                user_id=claims.sub,
                jti=claims.jti,
                correlation_id=correlation_id,
                actor=f"user:{claims.sub}",
            ),
            VerifySessionReply,
            timeout,
        )
    except TokenInvalid:
        # A token that a refresh replaced: as good as no token.
        return Rejected(CloseCode.TOKEN_INVALID, "token superseded", subprotocol)
    except SessionExpired:
        return Rejected(CloseCode.EXPIRED, "session expired", subprotocol)
    except (SessionNotFound, SessionInactive):
        return Rejected(CloseCode.SESSION_GONE, "session not found or revoked", subprotocol)
    except RuntimeUnavailable:
        return Rejected(CloseCode.RUNTIME_UNAVAILABLE, "runtime unavailable", subprotocol)
    except SymphainyError as exc:
        log.warning("session verification failed [%s]: %s", correlation_id, exc.code)
        return Rejected(CloseCode.RUNTIME_UNAVAILABLE, exc.code, subprotocol)
    return Admitted(subprotocol=subprotocol, claims=claims, session=session)
