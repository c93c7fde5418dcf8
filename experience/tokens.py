"""Session tokens: signed JWTs that name a server-side session.

Algorithms are pinned (never read from the token), every claim is required, and the header's
``kid`` picks one of several live keys so keys can rotate without logging anyone out.

The ``jti`` is not made up here: the runtime records it on the session as its one current token
(new at every create and refresh), so a token a refresh replaced can be told from the current one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from bus.settings import Settings
from intents import TokenExpired, TokenInvalid, new_id, utcnow

REQUIRED_CLAIMS = ("sub", "sid", "jti", "iat", "nbf", "exp", "iss", "aud")
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
# Clock skew tolerated between the processes that issue and verify tokens.
LEEWAY_S = 5


@dataclass(frozen=True)
class TokenClaims:
    """The verified claims of a session token."""

    sub: str
    sid: str
    jti: str
    iat: datetime
    exp: datetime
    kid: str


@dataclass(frozen=True)
class IssuedToken:
    """A freshly signed token and when it stops being accepted."""

    token: str
    claims: TokenClaims


class Keyring:
    """The signing key (``active_kid``) and every key that verifies, for one pinned algorithm."""

    def __init__(self, algorithm: str, keys: Mapping[str, str], active_kid: str) -> None:
        if active_kid not in keys:
            raise ValueError(f"active key {active_kid!r} is not among the keys")
        self.algorithm = algorithm
        self.active_kid = active_kid
        self._signing: dict[str, Any] = {}
        self._verifying: dict[str, Any] = {}
        for kid, secret in keys.items():
            if algorithm.startswith("HS"):
                self._signing[kid] = secret
                self._verifying[kid] = secret
            else:
                private = load_pem_private_key(secret.encode(), password=None)
                self._signing[kid] = private
                self._verifying[kid] = private.public_key()

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        """The keyring that ``settings`` describe (keys resolved by ``experience.keys``)."""
        if not settings.jwt_keys or settings.jwt_active_kid is None:
            raise ValueError("no signing key configured")
        keys = {kid: secret.get_secret_value() for kid, secret in settings.jwt_keys.items()}
        return cls(settings.jwt_algorithm, keys, settings.jwt_active_kid)

    def signing_key(self) -> Any:
        """The key that signs new tokens."""
        return self._signing[self.active_kid]

    @property
    def only_kid(self) -> str | None:
        """The kid of the one key, when there is one: no need to read the header to pick it."""
        return next(iter(self._verifying)) if len(self._verifying) == 1 else None

    def sign(self, payload: Mapping[str, Any]) -> str:
        """``payload`` signed with the active key, its ``kid`` in the header."""
        return jwt.encode(
            dict(payload),
            self.signing_key(),
            algorithm=self.algorithm,
            headers={"kid": self.active_kid},
        )

    def verify(self, token: str, **checks: Any) -> tuple[str, dict[str, Any]]:
        """The key id and payload of ``token`` if one of our keys signed it with the pinned
        algorithm;
        ``checks`` go to ``jwt.decode`` (audience, issuer, leeway, options). Raises PyJWT's
        errors, or ``TokenInvalid`` for a missing or unknown key id.

        One parse of the token: the header is read before the signature check only to pick
        among several keys (during a rotation), and checked after it either way.
        """
        kid = self.only_kid or _unverified_kid(token)
        decoded = jwt.decode_complete(
            token, self.verifying_key(kid), algorithms=[self.algorithm], **checks
        )
        header = decoded["header"]
        if header.get("kid") != kid or header.get("alg") != self.algorithm:
            raise TokenInvalid()
        payload: dict[str, Any] = decoded["payload"]
        return kid, payload

    def verifying_key(self, kid: str) -> Any:
        """The key for ``kid``; an unknown kid is an invalid token."""
        try:
            return self._verifying[kid]
        except KeyError:
            raise TokenInvalid("unknown signing key") from None


class Tokens:
    """Issues and verifies session tokens."""

    def __init__(
        self,
        keyring: Keyring,
        *,
        issuer: str,
        audience: str,
        ttl_s: int,
        refresh_grace_s: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.ttl = timedelta(seconds=ttl_s)
        self.refresh_grace = timedelta(seconds=refresh_grace_s)
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> Tokens:
        """Tokens as ``settings`` configure them."""
        return cls(
            Keyring.from_settings(settings),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_s=settings.token_ttl_s,
            refresh_grace_s=settings.refresh_grace_s,
        )

    def issue(
        self, user_id: str, session_id: str, not_after: datetime, *, jti: str | None
    ) -> IssuedToken:
        """A token for the session, valid for the token lifetime but never past ``not_after``.

        ``jti`` is the session's current token id as the runtime recorded it; None (a session
        stored before rotation, which accepts any) gets a random one.
        """
        now = self.clock().replace(microsecond=0)
        exp = min(now + self.ttl, not_after.astimezone(UTC).replace(microsecond=0))
        claims = TokenClaims(
            sub=user_id,
            sid=session_id,
            jti=jti or new_id(),
            iat=now,
            exp=exp,
            kid=self.keyring.active_kid,
        )
        payload = {
            "sub": user_id,
            "sid": session_id,
            "jti": claims.jti,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "iss": self.issuer,
            "aud": self.audience,
        }
        return IssuedToken(token=self.keyring.sign(payload), claims=claims)

    def verify(self, token: str) -> TokenClaims:
        """The claims of a valid, unexpired token, else ``TokenInvalid`` or ``TokenExpired``."""
        return self._decode(token, allow_expired=False)

    def verify_for_refresh(self, token: str) -> TokenClaims:
        """Like ``verify``, but also accepts a token that expired within the refresh grace."""
        claims = self._decode(token, allow_expired=True)
        if claims.exp + self.refresh_grace < self.clock():
            raise TokenExpired("session token expired too long ago to refresh")
        return claims

    def _decode(self, token: str, *, allow_expired: bool) -> TokenClaims:
        try:
            kid, payload = self.keyring.verify(
                token,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": list(REQUIRED_CLAIMS), "verify_exp": not allow_expired},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired() from exc
        except jwt.PyJWTError as exc:
            raise TokenInvalid() from exc
        sub, sid, jti = payload["sub"], payload["sid"], payload["jti"]
        if not all(isinstance(v, str) for v in (sub, sid, jti)):
            raise TokenInvalid()
        if not all(_HEX_ID.fullmatch(v) for v in (sub, sid, jti)):
            raise TokenInvalid()
        try:
            iat = datetime.fromtimestamp(payload["iat"], UTC)
            exp = datetime.fromtimestamp(payload["exp"], UTC)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TokenInvalid() from exc
        return TokenClaims(sub=sub, sid=sid, jti=jti, iat=iat, exp=exp, kid=kid)


def _unverified_kid(token: str) -> str:
    """The ``kid`` a token's header names (not yet verified)."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise TokenInvalid() from exc
    if not isinstance(kid, str):
        raise TokenInvalid()
    return kid
