"""The session routes against real uvicorn, a real runtime and a real nats-server."""

from __future__ import annotations

from datetime import datetime

import httpx

from tests.stack import Stack


def bearer(login: dict[str, object]) -> dict[str, str]:
    return {"Authorization": f"Bearer {login['session_token']}"}


async def test_create_opens_another_session_for_the_same_user(stack: Stack) -> None:
    login = await stack.login("alice")
    async with httpx.AsyncClient(base_url=stack.base_url, headers=bearer(login)) as http:
        created = await http.post("/api/session/create")
        assert created.status_code == 201
        body = created.json()
        assert set(body) == {"session_id", "session_token", "expires_at"}
        assert body["session_id"] != login["session_id"]
        mine = await http.get(f"/api/session/{body['session_id']}")
    assert mine.status_code == 200
    assert mine.json()["user_id"] == login["user"]["id"]  # type: ignore[index]


async def test_create_honours_idempotency_key_per_user(stack: Stack) -> None:
    alice, bob = await stack.login("alice"), await stack.login("bob")
    async with httpx.AsyncClient(base_url=stack.base_url) as http:

        async def create(who: dict[str, object], key: str) -> httpx.Response:
            return await http.post(
                "/api/session/create", headers={**bearer(who), "Idempotency-Key": key}
            )

        first = await create(alice, "k1")
        repeat = await create(alice, "k1")
        other_key = await create(alice, "k2")
        bobs = await create(bob, "k1")
        too_long = await create(alice, "x" * 201)
    assert first.status_code == repeat.status_code == 201
    assert repeat.json()["session_id"] == first.json()["session_id"]
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert other_key.json()["session_id"] != first.json()["session_id"]
    assert bobs.json()["session_id"] != first.json()["session_id"]
    assert too_long.status_code == 422


async def test_get_shows_own_sessions_and_hides_others(stack: Stack) -> None:
    alice, bob = await stack.login("alice"), await stack.login("bob")
    async with httpx.AsyncClient(base_url=stack.base_url, headers=bearer(alice)) as http:
        own = await http.get(f"/api/session/{alice['session_id']}")
        others = await http.get(f"/api/session/{bob['session_id']}")
        absent = await http.get("/api/session/" + "0" * 32)
        malformed = await http.get("/api/session/not-a-session-id")
    assert own.status_code == 200
    assert set(own.json()) >= {
        "session_id",
        "user_id",
        "state",
        "created_at",
        "expires_at",
        "last_seen_at",
    }
    assert own.json()["state"] == "active"
    for response in (others, absent):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "session_not_found"
    # Not a session id at all: no route matches (ids are 32 hex characters).
    assert malformed.status_code == 404
    assert malformed.json()["error"]["code"] == "not_found"
    # Another user's session and an absent one are indistinguishable.
    assert others.json() == absent.json()


async def test_delete_revokes_that_session_only(stack: Stack) -> None:
    first, second, bob = (
        await stack.login("alice"),
        await stack.login("alice"),
        await stack.login("bob"),
    )
    async with httpx.AsyncClient(base_url=stack.base_url, headers=bearer(first)) as http:
        assert (await http.delete(f"/api/session/{bob['session_id']}")).status_code == 404
        assert (await http.delete(f"/api/session/{'f' * 32}")).status_code == 404
        assert (await http.delete(f"/api/session/{second['session_id']}")).status_code == 204
        # Revoked is gone for its owner: 404, like an absent session.
        revoked = await http.get(f"/api/session/{second['session_id']}")
        assert revoked.status_code == 404
        gone = await http.get("/api/sessions", headers=bearer(second))
        still_bob = await http.get("/api/sessions", headers=bearer(bob))
        still_me = await http.get("/api/sessions")
    assert gone.status_code == 401
    assert still_bob.status_code == 200
    assert still_me.status_code == 200


async def test_list_shows_the_callers_live_sessions(stack: Stack) -> None:
    first, second, bob = (
        await stack.login("alice"),
        await stack.login("alice"),
        await stack.login("bob"),
    )
    third = await stack.login("alice")
    async with httpx.AsyncClient(base_url=stack.base_url, headers=bearer(first)) as http:
        await http.delete(f"/api/session/{third['session_id']}")
        listed = await http.get("/api/sessions")
    assert listed.status_code == 200
    ids = [s["session_id"] for s in listed.json()]
    assert sorted(ids) == sorted([first["session_id"], second["session_id"]])
    assert bob["session_id"] not in ids
    current = [s["session_id"] for s in listed.json() if s["current"]]
    assert current == [first["session_id"]]


async def test_refresh_gives_a_new_token_for_the_same_session(stack: Stack) -> None:
    login = await stack.login("alice")
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        before = (
            await http.get(f"/api/session/{login['session_id']}", headers=bearer(login))
        ).json()
        refreshed = await http.post("/api/session/refresh", headers=bearer(login))
        assert refreshed.status_code == 200
        body = refreshed.json()
        assert body["session_id"] == login["session_id"]
        assert body["session_token"] != login["session_token"]
        after = (await http.get(f"/api/session/{login['session_id']}", headers=bearer(body))).json()
        assert datetime.fromisoformat(after["last_seen_at"]) >= datetime.fromisoformat(
            before["last_seen_at"]
        )
        assert datetime.fromisoformat(after["expires_at"]) >= datetime.fromisoformat(
            before["expires_at"]
        )
        await http.post("/api/auth/logout", headers=bearer(body))
        dead = await http.post("/api/session/refresh", headers=bearer(login))
        garbage = await http.post("/api/session/refresh", headers={"Authorization": "Bearer x"})
    assert dead.status_code == 401
    assert dead.json()["error"]["code"] == "session_revoked"
    assert garbage.status_code == 401


async def test_bearer_routes_without_a_runtime_are_503(stack: Stack) -> None:
    login = await stack.login("alice")
    await stack.stop_workers()
    async with httpx.AsyncClient(base_url=stack.base_url, headers=bearer(login)) as http:
        for method, path in [
            ("GET", "/api/sessions"),
            ("POST", "/api/session/create"),
            ("GET", f"/api/session/{login['session_id']}"),
            ("DELETE", f"/api/session/{login['session_id']}"),
            ("POST", "/api/session/refresh"),
            ("POST", "/api/auth/logout"),
        ]:
            response = await http.request(method, path)
            assert response.status_code == 503, (method, path)
            assert response.headers["Retry-After"] == str(stack.settings.retry_after_s)
    # The runtime comes back: the same token works again (nothing was lost).
    await stack.start_worker()
    async with httpx.AsyncClient(base_url=stack.base_url, headers=bearer(login)) as http:
        assert (await http.get("/api/sessions")).status_code == 200
