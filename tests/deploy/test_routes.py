"""Every route the Experience Plane serves is reachable through Traefik configured from the
compose labels, WebSocket included. A route the labels miss is Traefik's own 404, and fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from experience.app import STATIC_DIR, create_app
from experience.gate.protocol import CloseCode
from tests.deploy.compose import dynamic_config, resolved_config
from tests.deploy.traefik import running_traefik
from tests.stack import Stack, close_code, frames_until_final

PROXY_404 = "404 page not found\n"


def flat_routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Routes with included routers opened up (FastAPI keeps them as one entry each)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from flat_routes(inner.routes)
        else:
            yield route


def app_paths(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, concrete path) for every HTTP route and file, ("WS", path) for sockets."""
    for route in flat_routes(app.routes):
        if isinstance(route, (APIWebSocketRoute, WebSocketRoute)):
            yield "WS", route.path
        elif isinstance(route, (APIRoute, Route)):
            path = re.sub(r"\{[^}]+\}", "0" * 32, route.path)
            for method in sorted(route.methods or {"GET"}):
                yield method, path
        elif isinstance(route, Mount):
            yield "GET", route.path or "/"
            for file in sorted(Path(STATIC_DIR).iterdir()):
                yield "GET", f"{route.path.rstrip('/')}/{file.name}"


def experience_labels() -> dict[str, str]:
    labels: dict[str, str] = resolved_config()["services"]["experience"]["labels"]
    return labels


async def unrouted(front: str, paths: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (method, path) pairs that Traefik itself answers with 404."""
    missing = []
    async with httpx.AsyncClient(base_url=front) as http:
        for method, path in paths:
            if method == "WS":
                # A plain GET to a socket path: the app answers it (not found or upgrade
                # required); only an unrouted path gets Traefik's own 404 text.
                method = "GET"
            response = await http.request(method, path)
            if response.status_code == 404 and response.text == PROXY_404:
                missing.append((method, path))
    return missing


async def test_every_route_of_the_app_passes_through_traefik(stack: Stack, tmp_path: Path) -> None:
    app = create_app(stack.settings)
    paths = list(app_paths(app))
    # The enumeration misses nothing the app documents.
    documented = {re.sub(r"\{[^}]+\}", "0" * 32, p) for p in app.openapi()["paths"]}
    assert documented <= {path for _, path in paths}
    assert ("POST", "/api/auth/login") in paths
    assert ("GET", "/api/sessions") in paths
    assert ("WS", "/api/runtime/agent") in paths
    dynamic = dynamic_config(experience_labels(), stack.base_url, "web")
    async with running_traefik(tmp_path / "traefik", dynamic) as front:
        assert await unrouted(front, paths) == []
        # Routers are exact: a path the app does not serve is not forwarded at all.
        async with httpx.AsyncClient(base_url=front) as http:
            assert (await http.get("/api/sessionsX")).text == PROXY_404


async def test_a_missing_label_is_caught(stack: Stack, tmp_path: Path) -> None:
    labels = {
        k: v
        for k, v in experience_labels().items()
        if not k.startswith("traefik.http.routers.sessions.")
    }
    paths = list(app_paths(create_app(stack.settings)))
    async with running_traefik(
        tmp_path / "traefik", dynamic_config(labels, stack.base_url, "web")
    ) as front:
        missing = await unrouted(front, paths)
    assert ("GET", "/api/sessions") in missing
    assert ("POST", "/api/session/create") in missing
    assert ("POST", "/api/auth/login") not in missing


async def test_websocket_admission_through_traefik(stack: Stack, tmp_path: Path) -> None:
    dynamic = dynamic_config(experience_labels(), stack.base_url, "web")
    async with running_traefik(tmp_path / "traefik", dynamic) as front:
        login = await stack.login("alice")
        url = front.replace("http://", "ws://") + "/api/runtime/agent"
        async with stack.open(login["session_token"], url=url) as ws:
            await ws.send('{"type": "intent", "id": "t", "intent": "echo", "payload": {}}')
            assert (await frames_until_final(ws, "t"))[-1]["type"] == "result"
        async with stack.open("not-a-token", url=url) as ws:
            assert await close_code(ws) == CloseCode.TOKEN_INVALID
