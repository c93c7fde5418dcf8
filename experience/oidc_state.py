"""The state of a login in flight (``state``, ``nonce``, the PKCE verifier), kept by the browser.

A signed, short-lived cookie, HttpOnly, SameSite=Lax (the provider's redirect back is a top-level
GET, which Lax lets through), scoped to ``/api/auth/oidc``: any Experience process can finish a
login another one started, and nothing is stored server-side. It is signed (PyJWT) with the
session-token keyring under an audience of its own, so neither can pass for the other.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

import jwt

from experience.tokens import Keyring
from intents import LoginStateInvalid, TokenInvalid, utcnow

COOKIE = "symphainy_oidc_login"
COOKIE_PATH = "/api/auth/oidc"
# Long enough to sign in at the provider, short enough that a stale tab cannot finish a login.
TTL = timedelta(minutes=10)
_FIELDS = ("provider", "state", "nonce", "verifier")


@dataclass(frozen=True)
class LoginState:
    """One login in flight."""

    provider: str
    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls, provider: str) -> LoginState:
        """Fresh random values: 256 bits each; the verifier is a valid PKCE verifier (43+)."""
        return cls(
            provider=provider,
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(48),
        )


class LoginStates:
    """Seals login states into cookie values and opens them again."""

    def __init__(self, keyring: Keyring, audience: str) -> None:
        self._keyring = keyring
        self._audience = f"{audience}:oidc-login"

    def seal(self, login: LoginState) -> str:
        """The cookie value for ``login``."""
        now = utcnow().replace(microsecond=0)
        payload = {
            "provider": login.provider,
            "state": login.state,
            "nonce": login.nonce,
            "verifier": login.verifier,
            "aud": self._audience,
            "iat": now,
            "exp": now + TTL,
        }
        return self._keyring.sign(payload)

    def open(self, cookie: str | None, state: str | None) -> LoginState:
        """The login state of ``cookie`` if it is ours, unexpired, and for this ``state``."""
        if not cookie or not state:
            raise LoginStateInvalid()
        try:
            _, payload = self._keyring.verify(
                cookie,
                audience=self._audience,
                options={"require": ["exp", "iat", "aud", *_FIELDS]},
            )
        except (jwt.PyJWTError, TokenInvalid) as exc:  # TokenInvalid: an unknown key id
            raise LoginStateInvalid() from exc
        values = [payload[f] for f in _FIELDS]
        if not all(isinstance(v, str) and v for v in values):
            raise LoginStateInvalid()
        login = LoginState(*values)
        if not secrets.compare_digest(login.state, state):
            raise LoginStateInvalid()
        return login
