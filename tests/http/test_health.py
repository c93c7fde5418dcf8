"""Health, readiness, unknown routes, OpenAPI, and what reaches the logs."""

from __future__ import annotations

import httpx
import pytest

from tests.stack import Stack, StackFactory


async def test_healthz_and_readyz(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["runtime"] == stack.workers[0].worker_id
        await stack.stop_workers()
        alive = await http.get("/healthz")
        not_ready = await http.get("/readyz")
    assert alive.status_code == 200
    assert not_ready.status_code == 503
    assert "Retry-After" in not_ready.headers


async def test_unknown_routes_and_methods_use_the_error_shape(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        unknown = await http.get("/api/nope")
        # The seed's gateway routed /api/sessions but not /api/session: both exist here.
        wrong_method = await http.put("/api/sessions")
        docs = await http.get("/docs")
        schema = await http.get("/openapi.json")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert docs.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/auth/login",
        "/api/auth/logout",
        "/api/session/create",
        "/api/session/{session_id}",
        "/api/sessions",
        "/api/session/refresh",
    ):
        assert path in paths


async def test_query_strings_never_reach_the_logs(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        await http.get("/healthz?session_token=very-secret-token")
    access = [r for r in caplog.records if r.name == "uvicorn.access"]
    assert access, "the access log should have recorded the request"
    # Only the client's own log (httpx) may know the URL it asked for.
    server_side = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    assert not [line for line in server_side if "very-secret-token" in line]


async def test_experience_may_start_before_any_runtime(make_stack: StackFactory) -> None:
    stack = await make_stack(workers=0)
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        assert (await http.get("/readyz")).status_code == 503
        await stack.start_worker()
        await stack.add_user("alice")
        assert (await http.get("/readyz")).status_code == 200
    login = await stack.login("alice")
    assert login["user"]["username"] == "alice"
