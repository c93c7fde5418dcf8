"""A real OpenID provider for the tests (npm ``oidc-provider`` under node, tests/oidc/provider.mjs)
and a system configured to log in through it.

The Experience Plane's socket is bound before anything starts, so the provider can be told the
exact redirect URI and the app its exact public URL, with no port race.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey
from nats.aio.client import Client
from pydantic import SecretStr

from bus.settings import Settings
from experience.app import create_app
from experience.server import build_server
from runtime_worker.passwords import Passwords
from tests.stack import Stack

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "tests" / "oidc" / "provider.mjs"
CLIENT_ID = "symphainy"
CLIENT_SECRET = "a-test-client-secret-0123456789"
PUBLIC_CLIENT_ID = "symphainy-public"
OTHER_CLIENT_ID = "another-app"
OTHER_REDIRECT = "http://127.0.0.1:9/cb"


def rsa_jwk(kid: str = "k1") -> dict[str, Any]:
    """A private RS256 signing key as a JWK."""
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
    return dict(key.as_dict(private=True))


def _node() -> str:
    node = shutil.which("node")
    ready = node is not None and (ROOT / "node_modules" / "oidc-provider").is_dir()
    if not ready:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node and npm's oidc-provider (npm ci) are needed, and CI runs every tier")
        pytest.skip("needs node and `npm ci` (oidc-provider); CI=true makes this a failure")
    assert node is not None
    return node


@dataclass
class Provider:
    """A running oidc-provider."""

    issuer: str
    port: int
    process: asyncio.subprocess.Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def post(self, path: str, body: str) -> None:
        async with httpx.AsyncClient(base_url=self.url) as http:
            response = await http.post(path, content=body)
        assert response.status_code == 204, response.text

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_provider(
    redirect_uri: str, jwk: dict[str, Any], *, issuer: str | None = None
) -> Provider:
    """oidc-provider with our confidential and public clients and one other app."""
    base = redirect_uri.split("/api/")[0] + "/"
    clients = [
        {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "token_endpoint_auth_method": "client_secret_basic",
            "redirect_uris": [redirect_uri],
            "post_logout_redirect_uris": [base],
        },
        {
            "client_id": PUBLIC_CLIENT_ID,
            "token_endpoint_auth_method": "none",
            "redirect_uris": [redirect_uri],
            "post_logout_redirect_uris": [base],
        },
        {
            "client_id": OTHER_CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [OTHER_REDIRECT],
        },
    ]
    config: dict[str, Any] = {"clients": clients, "jwks": {"keys": [jwk]}}
    if issuer is not None:
        config["issuer"] = issuer
    process = await asyncio.create_subprocess_exec(
        _node(),
        str(SCRIPT),
        json.dumps(config),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        started = json.loads(line)
    except (TimeoutError, ValueError):
        process.kill()
        await process.wait()
        raise
    return Provider(issuer=started["issuer"], port=started["port"], process=process)


def listening_socket() -> socket.socket:
    """A bound loopback socket for uvicorn (IPPROTO_TCP: see RECIPES on TCP_NODELAY)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class OidcSystem:
    """A stack whose Experience Plane logs in through ``provider``."""

    stack: Stack
    provider: Provider
    jwk: dict[str, Any]

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    @property
    def callback(self) -> str:
        return self.base_url + "/api/auth/oidc/callback"


@asynccontextmanager
async def oidc_system(
    settings: Settings,
    nc: Client,
    passwords: Passwords,
    *,
    client_id: str = CLIENT_ID,
    **overrides: Any,
) -> AsyncIterator[OidcSystem]:
    """Bind, start the provider for that address, then a worker and the app configured for it."""
    sock = listening_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    jwk = rsa_jwk()
    try:
        provider = await start_provider(base + "/api/auth/oidc/callback", jwk)
    except BaseException:  # no provider (a skip without node, say): the socket goes too
        sock.close()
        raise
    secret = SecretStr(CLIENT_SECRET) if client_id == CLIENT_ID else None
    stack = Stack(
        settings=settings.model_copy(
            update={
                "public_url": base,
                "oidc_issuer": provider.issuer,
                "oidc_client_id": client_id,
                "oidc_client_secret": secret,
                "oidc_name": "Test Provider",
                "oidc_timeout_s": 2.0,
                **overrides,
            }
        ),
        nc=nc,
        passwords=passwords,
    )
    try:
        await stack.start_worker()
        await serve_on(stack, sock)
        yield OidcSystem(stack=stack, provider=provider, jwk=jwk)
    finally:
        await stack.stop_server()
        await stack.stop_workers()
        await provider.stop()
        sock.close()


async def serve_on(stack: Stack, sock: socket.socket) -> None:
    """``Stack.start_server`` on a socket bound beforehand."""
    app = create_app(stack.settings)
    stack.server = build_server(app, stack.settings, "127.0.0.1", 0)
    stack.serving = asyncio.create_task(stack.server.serve(sockets=[sock]))
    while not stack.server.started:
        if stack.serving.done():
            stack.serving.result()
        await asyncio.sleep(0.01)


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"', re.IGNORECASE)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', re.IGNORECASE)
_CANCEL = re.compile(r'<a href="([^"]+)">\[ Cancel \]</a>')


async def follow(http: httpx.AsyncClient, url: str, *, stop_at: str) -> str:
    """Follow redirects (and the provider's login and consent forms, as user ``alice``) until
    a redirect to a URL starting with ``stop_at``; that URL, not fetched."""
    for _ in range(20):
        response = await http.get(url)
        while response.status_code == 200 and "<form" in response.text:
            response = await _submit(http, url, response.text)
        assert response.status_code in (302, 303), (response.status_code, response.text[:500])
        url = urljoin(url, response.headers["location"])
        if url.startswith(stop_at):
            return url
    raise AssertionError("too many redirects")


async def _submit(http: httpx.AsyncClient, page_url: str, html: str) -> httpx.Response:
    form = _FORM.search(html)
    assert form is not None, html[:500]
    data = {name: unescape(value) for name, value in _HIDDEN.findall(html)}
    if data.get("prompt") == "login":
        data |= {"login": "alice", "password": "any password"}
    return await http.post(urljoin(page_url, unescape(form.group(1))), data=data)


async def cancel_at_provider(http: httpx.AsyncClient, url: str, *, stop_at: str) -> str:
    """Go to the provider's login page and press its Cancel link; the redirect back."""
    for _ in range(10):
        response = await http.get(url)
        if response.status_code == 200:
            link = _CANCEL.search(response.text)
            assert link is not None, response.text[:500]
            return await follow(http, urljoin(url, unescape(link.group(1))), stop_at=stop_at)
        url = urljoin(url, response.headers["location"])
    raise AssertionError("never reached the login page")


async def start_login(http: httpx.AsyncClient, base_url: str) -> str:
    """``GET /api/auth/oidc/login``: the provider URL it redirects to (its cookie kept)."""
    response = await http.get(base_url + "/api/auth/oidc/login")
    assert response.status_code == 303, response.text
    return response.headers["location"]


def query(url: str) -> dict[str, str]:
    """The single-valued query parameters of ``url``."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def fragment(url: str) -> dict[str, str]:
    """The single-valued parameters of ``url``'s fragment."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).fragment).items()}


async def direct_id_token(
    provider: Provider,
    *,
    client_id: str,
    redirect_uri: str,
    nonce: str,
    secret: str | None = CLIENT_SECRET,
) -> str:
    """An ID token the provider really signs for ``client_id``, from a code flow of our own."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "client_id": client_id,
        "response_type": "code",
        "scope": "openid profile email",
        "redirect_uri": redirect_uri,
        "state": secrets.token_urlsafe(8),
        "nonce": nonce,
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    async with httpx.AsyncClient(timeout=10) as http:
        back = await follow(http, f"{provider.url}/auth?{urlencode(params)}", stop_at=redirect_uri)
        auth = (client_id, secret) if secret else None
        response = await http.post(
            f"{provider.url}/token",
            data={
                "grant_type": "authorization_code",
                "code": query(back)["code"],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
                **({} if secret else {"client_id": client_id}),
            },
            auth=auth or httpx.USE_CLIENT_DEFAULT,
        )
    assert response.status_code == 200, response.text
    return str(response.json()["id_token"])
