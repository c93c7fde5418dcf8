"""No lockout by strangers, and client addresses that a client cannot choose for itself.

Requests come from distinct loopback addresses by binding the client's socket (127.0.0.2 is as
local as 127.0.0.1 on Linux), against real uvicorn, a real runtime and a real nats-server.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from bus import names
from tests.stack import PASSWORD, Stack, StackFactory

# The user's own logins: one a second, each answered within this bound.
LOGINS = 6
ANSWER_BOUND_S = 2.0


def client_from(stack: Stack, address: str) -> httpx.AsyncClient:
    """A client whose connections leave from ``address``."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=stack.base_url, transport=transport, timeout=10)


async def test_a_stranger_hammering_a_name_does_not_lock_its_user_out(stack: Stack) -> None:
    stop = asyncio.Event()
    under_attack = asyncio.Event()
    attacker_statuses: list[int] = []
    retry_after: set[str] = set()

    async def hammer(http: httpx.AsyncClient) -> None:
        guess = {"username": "alice", "password": "wrong guess"}
        while not stop.is_set():
            response = await http.post("/api/auth/login", json=guess)
            attacker_statuses.append(response.status_code)
            if attacker_statuses.count(401) >= 5:
                under_attack.set()
            if response.status_code == 429:
                retry_after.add(response.headers["Retry-After"])
            await asyncio.sleep(0.02)  # pacing only: a hammer, not a busy loop

    async with client_from(stack, "127.0.0.2") as attacker, client_from(stack, "127.0.0.1") as me:
        attackers = [asyncio.create_task(hammer(attacker)) for _ in range(3)]
        try:
            # Let the attack get going first: her logins meet a name already under attack.
            await asyncio.wait_for(under_attack.wait(), 10)
            durations = []
            loop = asyncio.get_running_loop()
            next_at = loop.time()
            for _ in range(LOGINS):
                started = time.monotonic()
                mine = await me.post(
                    "/api/auth/login", json={"username": "alice", "password": PASSWORD}
                )
                durations.append(time.monotonic() - started)
                assert mine.status_code == 200, mine.text
                next_at += 1.0
                await asyncio.sleep(max(0.0, next_at - loop.time()))
        finally:
            stop.set()
            await asyncio.gather(*attackers)
    assert max(durations) < ANSWER_BOUND_S, durations
    # She was slowed (the name's failures delay every attempt on it), never refused.
    assert max(durations) >= 0.5, durations
    assert set(attacker_statuses) == {401, 429}
    assert attacker_statuses.count(401) <= stack.settings.login_rate_limit
    assert all(1 <= int(value) <= stack.settings.login_rate_window_s for value in retry_after)


async def test_a_client_rotating_x_forwarded_for_meets_the_per_address_limit(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(login_rate_limit=3)  # forwarded_allow_ips left at its default
    statuses = []
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        for i in range(6):
            response = await http.post(
                "/api/auth/login",
                json={"username": f"user{i}", "password": "guess"},
                headers={"X-Forwarded-For": f"10.1.0.{i}"},
            )
            statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429, 429, 429]


async def test_a_configured_proxy_names_the_client_address(make_stack: StackFactory) -> None:
    stack = await make_stack(login_rate_limit=2, forwarded_allow_ips="127.0.0.1")
    audited: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def collect(msg: object) -> None:
        audited.put_nowait(json.loads(msg.data))  # type: ignore[attr-defined]

    sub = await stack.nc.subscribe(names.audit_subject(names.USER_AUTHENTICATE), cb=collect)
    guess = {"username": "nobody", "password": "guess"}
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        relayed = [
            (await http.post("/api/auth/login", json=guess, headers=fwd)).status_code
            for fwd in [{"X-Forwarded-For": "10.2.0.1"}] * 3 + [{"X-Forwarded-For": "10.2.0.2"}]
        ]
    assert relayed == [401, 401, 429, 401]
    record = await asyncio.wait_for(audited.get(), 5)
    assert record["client_address"] == "10.2.0.1"  # what the runtime counts attempts under
    await sub.unsubscribe()
