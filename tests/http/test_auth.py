"""Login and logout against real uvicorn, a real runtime and a real nats-server."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import jwt

from bus import names
from tests.stack import PASSWORD, Stack, StackFactory


async def test_login_opens_a_session_stored_as_json_under_its_id(stack: Stack) -> None:
    login = await stack.login("alice")
    assert set(login) == {"session_id", "session_token", "expires_at", "user"}
    assert login["user"]["username"] == "alice"
    claims = jwt.decode(login["session_token"], options={"verify_signature": False})
    assert claims["sid"] == login["session_id"]
    assert claims["sub"] == login["user"]["id"]
    # What `nats kv get sessions <id>` shows: the session id is the key, the value is JSON.
    entry = await (await stack.nc.jetstream().key_value(names.SESSIONS_BUCKET)).get(
        login["session_id"]
    )
    assert entry.value is not None
    stored = json.loads(entry.value)
    assert stored["session_id"] == login["session_id"]
    assert stored["state"] == "active"
    assert stored["username"] == "alice"


async def test_wrong_password_and_unknown_user_get_the_same_401(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        wrong = await http.post("/api/auth/login", json={"username": "alice", "password": "not it"})
        unknown = await http.post(
            "/api/auth/login", json={"username": "nobody", "password": "not it"}
        )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"


async def test_bad_login_bodies_are_422_with_the_error_shape(stack: Stack) -> None:
    bodies: list[dict[str, object]] = [
        {"username": "alice"},
        {"password": PASSWORD},
        {"username": "", "password": PASSWORD},
        {"username": "alice", "password": ""},
        {"username": "alice", "password": PASSWORD, "admin": True},
        {"username": ["alice"], "password": PASSWORD},
        {"username": "a" * 300, "password": PASSWORD},
    ]
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        for body in bodies:
            response = await http.post("/api/auth/login", json=body)
            assert response.status_code == 422, body
            assert response.json()["error"]["code"] == "invalid_request"
        broken = await http.post(
            "/api/auth/login", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert broken.status_code == 422
        assert broken.json()["error"]["code"] == "invalid_request"


async def test_repeated_failures_are_429_with_retry_after(make_stack: StackFactory) -> None:
    stack = await make_stack(login_rate_limit=2, login_rate_window_s=60)
    await stack.add_user("alice")
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        bad = {"username": "alice", "password": "guess"}
        assert (await http.post("/api/auth/login", json=bad)).status_code == 401
        assert (await http.post("/api/auth/login", json=bad)).status_code == 401
        limited = await http.post(
            "/api/auth/login", json={"username": "alice", "password": PASSWORD}
        )
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def from_address(address: str) -> dict[str, str]:
    """Headers of a request relayed by a trusted proxy (loopback) for client ``address``."""
    return {"X-Forwarded-For": address}


# The test client plays the proxy: only then is X-Forwarded-For believed.
BEHIND_PROXY = {"forwarded_allow_ips": "127.0.0.1", "login_rate_limit": 2}


async def test_attempts_on_one_name_from_one_address_are_limited_across_experience_processes(
    make_stack: StackFactory,
) -> None:
    first = await make_stack(login_rate_window_s=60, **BEHIND_PROXY)
    second = await make_stack(workers=0, login_rate_window_s=60, **BEHIND_PROXY)
    await first.add_user("alice")
    bad = {"username": "alice", "password": "guess"}
    right = {"username": "alice", "password": PASSWORD}
    # Two processes, one failure each from one address: only a count shared by the runtime
    # reaches the limit of two (each process saw one failure from that address).
    for stack in (first, second):
        async with httpx.AsyncClient(base_url=stack.base_url) as http:
            failed = await http.post("/api/auth/login", json=bad, headers=from_address("10.0.0.1"))
            assert failed.status_code == 401
    async with httpx.AsyncClient(base_url=first.base_url) as http:
        limited = await http.post("/api/auth/login", json=right, headers=from_address("10.0.0.1"))
        other = await http.post(
            "/api/auth/login",
            json={"username": "bob", "password": "x"},
            headers=from_address("10.0.0.1"),
        )
        elsewhere = await http.post("/api/auth/login", json=right, headers=from_address("10.0.0.3"))
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 50 <= int(limited.headers["Retry-After"]) <= 60  # the window's end, not a default
    assert other.status_code == 401  # another name is not affected
    assert elsewhere.status_code == 200  # nor the name from another address


async def test_failures_from_one_address_do_not_lock_out_another(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(login_rate_window_s=60, **BEHIND_PROXY)
    await stack.add_user("carol")
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        for name in ("x1", "x2"):
            guess = {"username": name, "password": "guess"}
            failed = await http.post(
                "/api/auth/login", json=guess, headers=from_address("10.0.0.9")
            )
            assert failed.status_code == 401
        right = {"username": "carol", "password": PASSWORD}
        blocked = await http.post("/api/auth/login", json=right, headers=from_address("10.0.0.9"))
        allowed = await http.post("/api/auth/login", json=right, headers=from_address("10.0.0.8"))
    assert blocked.status_code == 429
    assert allowed.status_code == 200


async def test_login_without_a_runtime_is_503_with_retry_after_promptly(stack: Stack) -> None:
    await stack.stop_workers()
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        started = time.monotonic()
        response = await http.post(
            "/api/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(stack.settings.retry_after_s)
    assert response.json()["error"]["code"] == "runtime_unavailable"
    # Within the request deadline, never a hang.
    assert elapsed < stack.settings.request_timeout_s + 1


async def test_logout_makes_the_token_useless_at_once(stack: Stack) -> None:
    login = await stack.login("alice")
    auth = {"Authorization": f"Bearer {login['session_token']}"}
    async with httpx.AsyncClient(base_url=stack.base_url, headers=auth) as http:
        assert (await http.get("/api/sessions")).status_code == 200
        assert (await http.post("/api/auth/logout")).status_code == 204
        after = await http.get("/api/sessions")
        again = await http.post("/api/auth/logout")
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "session_revoked"
    assert again.status_code == 401


async def test_logout_needs_a_valid_bearer_token(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        missing = await http.post("/api/auth/logout")
        garbage = await http.post("/api/auth/logout", headers={"Authorization": "Bearer x.y.z"})
        basic = await http.post("/api/auth/logout", headers={"Authorization": "Basic YTpi"})
    for response in (missing, garbage, basic):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "token_invalid"


async def test_correlation_id_travels_from_http_to_the_audit_log(stack: Stack) -> None:
    records: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def collect(msg: object) -> None:
        records.put_nowait(json.loads(msg.data))  # type: ignore[attr-defined]

    sub = await stack.nc.subscribe(names.audit_subject(names.SESSION_CREATE), cb=collect)
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        response = await http.post(
            "/api/auth/login",
            json={"username": "alice", "password": PASSWORD},
            headers={names.CORRELATION_HEADER: "trace-42"},
        )
    assert response.headers[names.CORRELATION_HEADER] == "trace-42"
    record = await asyncio.wait_for(records.get(), 5)
    assert record["correlation_id"] == "trace-42"
    await sub.unsubscribe()
