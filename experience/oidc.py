"""An OpenID provider as the Experience Plane sees it: discovery, the authorization request,
the code exchange and the ID token's checks, all done by Authlib and joserfc.

Discovery (``<issuer>/.well-known/openid-configuration``) and the provider's keys are fetched on
first use and cached, so the app starts and serves password logins while the provider is down.
Every call to the provider runs under one deadline (``oidc_timeout_s``); whatever goes wrong
there is ``ProviderUnavailable`` (502), what the provider sends that fails a check is one of the
``ExternalLoginFailed`` errors (400). Providers are kept by id (``PROVIDER_ID`` is the one that
settings configure), so more can be added without changing the routes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from bus.settings import Settings
from intents import (
    AuthorizationCodeInvalid,
    IdTokenInvalid,
    ProviderUnavailable,
)

log = logging.getLogger(__name__)

PROVIDER_ID = "default"
DISCOVERY_PATH = "/.well-known/openid-configuration"
# Signature algorithms an ID token may use: asymmetric only (never ``none``, never an HMAC
# keyed with the client secret), and of those only what the provider advertises.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
# Discovery is fetched again after this long; keys also when a token names an unknown key id,
# at most once per ``KEYS_REFETCH_S`` (a token cannot make us hammer the provider).
METADATA_TTL_S = 3600.0
KEYS_REFETCH_S = 30.0


@dataclass(frozen=True)
class ProviderConfig:
    """One configured provider."""

    id: str
    name: str
    issuer: str
    client_id: str
    client_secret: str | None
    scopes: str
    timeout_s: float
    clock_skew_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ProviderConfig | None:
        """The provider that ``SYMPHAINY_OIDC_*`` describe, or None when it is not configured."""
        if not settings.oidc_issuer or not settings.oidc_client_id:
            return None
        issuer = settings.oidc_issuer
        if not (settings.dev_mode or _secure(issuer)):
            raise ValueError(f"oidc_issuer must be https (or a loopback address): {issuer}")
        secret = settings.oidc_client_secret
        return cls(
            id=PROVIDER_ID,
            name=settings.oidc_name,
            issuer=issuer,
            client_id=settings.oidc_client_id,
            client_secret=secret.get_secret_value() if secret else None,
            scopes=" ".join(settings.oidc_scopes.split()),
            timeout_s=settings.oidc_timeout_s,
            clock_skew_s=settings.oidc_clock_skew_s,
        )


def _secure(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    try:
        return parts.scheme == "http" and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return parts.scheme == "http" and host == "localhost"


@dataclass(frozen=True)
class Metadata:
    """What discovery told us, checked."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    userinfo_endpoint: str | None
    algorithms: tuple[str, ...]

    @classmethod
    def parse(cls, doc: object, issuer: str) -> Metadata:
        """Check a discovery document: ours (same issuer), complete, with a usable algorithm."""
        if not isinstance(doc, dict):
            raise ProviderUnavailable("the provider's discovery document is not a JSON object")
        if doc.get("issuer") != issuer:
            raise ProviderUnavailable("the provider's discovery document names another issuer")
        fields = ("authorization_endpoint", "token_endpoint", "jwks_uri")
        if not all(isinstance(doc.get(f), str) and doc[f] for f in fields):
            raise ProviderUnavailable("the provider's discovery document lacks an endpoint")
        advertised = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(a for a in ALGORITHMS if a in advertised)
        if not algorithms:
            raise ProviderUnavailable("the provider signs ID tokens with no algorithm we accept")
        end_session = doc.get("end_session_endpoint")
        userinfo = doc.get("userinfo_endpoint")
        return cls(
            issuer=issuer,
            authorization_endpoint=doc["authorization_endpoint"],
            token_endpoint=doc["token_endpoint"],
            jwks_uri=doc["jwks_uri"],
            end_session_endpoint=end_session if isinstance(end_session, str) else None,
            userinfo_endpoint=userinfo if isinstance(userinfo, str) else None,
            algorithms=algorithms,
        )


@dataclass(frozen=True)
class ExternalIdentity:
    """Who the provider says logged in, from a verified ID token."""

    issuer: str
    sub: str
    email: str | None
    name: str | None
    preferred_username: str | None


class OidcProvider:
    """A provider's client: every method is bounded by the provider deadline."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._metadata: Metadata | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0
        self._lock = asyncio.Lock()

    def _client(self, redirect_uri: str | None = None) -> AsyncOAuth2Client:
        c = self.config
        return AsyncOAuth2Client(
            client_id=c.client_id,
            client_secret=c.client_secret,
            token_endpoint_auth_method="client_secret_basic" if c.client_secret else "none",
            scope=c.scopes,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=c.timeout_s,
            follow_redirects=False,
        )

    async def _get_json(self, url: str) -> Any:
        try:
            async with self._client() as client:
                response = await client.request("GET", url, withhold_token=True)
                response.raise_for_status()
                return response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            raise ProviderUnavailable(f"{self.config.name} did not answer ({exc})") from exc

    async def metadata(self) -> Metadata:
        """Discovery, cached for ``METADATA_TTL_S``; a failure is not cached."""
        async with self._lock:
            now = time.monotonic()
            if self._metadata is None or now - self._metadata_at > METADATA_TTL_S:
                async with _deadline(self.config):
                    doc = await self._get_json(self.config.issuer.rstrip("/") + DISCOVERY_PATH)
                self._metadata = Metadata.parse(doc, self.config.issuer)
                self._metadata_at = now
            return self._metadata

    async def _key_set(self, *, refresh: bool) -> KeySet:
        async with self._lock:
            now = time.monotonic()
            stale = refresh and now - self._keys_at > KEYS_REFETCH_S
            if self._keys is None or stale:
                metadata = self._metadata
                assert metadata is not None  # keys are only read after discovery
                async with _deadline(self.config):
                    doc = await self._get_json(metadata.jwks_uri)
                try:
                    self._keys = KeySet.import_key_set(doc)
                except (JoseError, ValueError, TypeError, KeyError) as exc:
                    raise ProviderUnavailable("the provider's keys cannot be read") from exc
                self._keys_at = now
            return self._keys

    async def authorization_url(
        self, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        """Where to send the browser: code flow with PKCE (S256), ``state`` and ``nonce``."""
        metadata = await self.metadata()
        async with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                metadata.authorization_endpoint,
                state=state,
                code_verifier=code_verifier,
                nonce=nonce,
            )
        return str(url)

    async def finish(
        self, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> ExternalIdentity:
        """Trade the code for tokens and return the identity of the checked ID token."""
        metadata = await self.metadata()
        try:
            async with _deadline(self.config), self._client(redirect_uri) as client:
                token = await client.fetch_token(
                    metadata.token_endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
                profile = await self._userinfo(client, metadata)
        except OAuthError as exc:
            if exc.error == "invalid_grant":
                raise AuthorizationCodeInvalid() from exc
            raise ProviderUnavailable(f"{self.config.name} refused the token request") from exc
        except (httpx2.HTTPError, ValueError) as exc:
            raise ProviderUnavailable(f"{self.config.name} did not answer ({exc})") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise IdTokenInvalid("the provider sent no ID token")
        access_token = token.get("access_token")
        identity = await self.verify_id_token(
            id_token, nonce, access_token if isinstance(access_token, str) else None
        )
        # Providers may keep the profile out of the ID token (scope claims go to userinfo when
        # an access token is issued); it counts only if it is about the same subject.
        if profile.get("sub") != identity.sub:
            return identity
        return ExternalIdentity(
            issuer=identity.issuer,
            sub=identity.sub,
            email=identity.email or _text(profile.get("email")),
            name=identity.name or _text(profile.get("name")),
            preferred_username=identity.preferred_username
            or _text(profile.get("preferred_username")),
        )

    async def _userinfo(self, client: AsyncOAuth2Client, metadata: Metadata) -> dict[str, Any]:
        """The userinfo endpoint's claims with the fresh access token; {} if there are none.

        Only names come from there (hints for a new user's name), so a failure is no failure.
        """
        if metadata.userinfo_endpoint is None:
            return {}
        try:
            response = await client.request("GET", metadata.userinfo_endpoint)
            response.raise_for_status()
            claims = response.json()
        except (httpx2.HTTPError, OAuthError, ValueError) as exc:
            log.info("userinfo of %s not read: %s", self.config.name, type(exc).__name__)
            return {}
        return claims if isinstance(claims, dict) else {}

    async def verify_id_token(
        self, id_token: str, nonce: str, access_token: str | None = None
    ) -> ExternalIdentity:
        """Check signature (the provider's keys, its advertised algorithms), ``iss``, ``aud``,
        ``azp``, ``exp``, ``iat``, ``nonce`` and ``at_hash``; each failure is ``IdTokenInvalid``.
        """
        metadata = await self.metadata()
        try:
            decoded = jwt.decode(id_token, await self._key_set(refresh=False), metadata.algorithms)
        except InvalidKeyIdError:
            # The provider may have rotated its keys since we fetched them.
            keys = await self._key_set(refresh=True)
            decoded = _decode(id_token, keys, metadata.algorithms)
        except (JoseError, ValueError) as exc:
            raise IdTokenInvalid("the ID token's signature does not verify") from exc
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "value": metadata.issuer},
                "aud": {"essential": True, "value": self.config.client_id},
                "nonce": {"essential": True, "value": nonce},
            },
            {"nonce": nonce, "client_id": self.config.client_id, "access_token": access_token},
        )
        try:
            claims.validate(leeway=self.config.clock_skew_s)
        except (JoseError, ValueError) as exc:
            raise IdTokenInvalid(f"the ID token failed a check: {exc}") from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 255:
            raise IdTokenInvalid("the ID token's subject is not usable")
        return ExternalIdentity(
            issuer=metadata.issuer,
            sub=sub,
            email=_text(claims.get("email")),
            name=_text(claims.get("name")),
            preferred_username=_text(claims.get("preferred_username")),
        )

    def deadline(self) -> AbstractAsyncContextManager[None]:
        """One deadline for a whole exchange with the provider (a route's several calls)."""
        return _deadline(self.config)

    async def logout_url(self, post_logout_redirect_uri: str) -> str | None:
        """RP-initiated logout at the provider, when it advertises an ``end_session_endpoint``."""
        endpoint = (await self.metadata()).end_session_endpoint
        if endpoint is None:
            return None
        query = urlencode(
            {
                "client_id": self.config.client_id,
                "post_logout_redirect_uri": post_logout_redirect_uri,
            }
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def _decode(id_token: str, keys: KeySet, algorithms: tuple[str, ...]) -> jwt.Token:
    try:
        return jwt.decode(id_token, keys, algorithms)
    except (JoseError, ValueError) as exc:
        raise IdTokenInvalid("the ID token's signature does not verify") from exc


def _text(value: object) -> str | None:
    return value[:256] if isinstance(value, str) and value else None


@asynccontextmanager
async def _deadline(config: ProviderConfig) -> AsyncIterator[None]:
    """``asyncio.timeout`` for provider calls, failing as ``ProviderUnavailable``."""
    try:
        async with asyncio.timeout(config.timeout_s):
            yield
    except TimeoutError as exc:
        raise ProviderUnavailable(f"{config.name} did not answer in time") from exc


def providers(settings: Settings) -> dict[str, OidcProvider]:
    """The configured providers by id (none, or the one that settings describe)."""
    config = ProviderConfig.from_settings(settings)
    return {} if config is None else {config.id: OidcProvider(config)}


__all__ = [
    "ExternalIdentity",
    "Metadata",
    "OidcProvider",
    "ProviderConfig",
    "providers",
]
