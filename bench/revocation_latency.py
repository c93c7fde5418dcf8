"""How long from a revocation over HTTP until the session's open socket is closed with 4404.

Real nats-server, runtime worker and uvicorn; sockets via the ``websockets`` client. The
baseline, measured in the same run, is one Bearer HTTP round trip (``GET /api/session/{id}``:
verify, then read), so the ratio says what the watch adds on top of plain request work.
Run: ``.venv/bin/python bench/revocation_latency.py [--n 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
from harness import running_system
from pydantic import SecretStr
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from intents import CreateUser
from intents.request import ask

PASSWORD = "a benchmark password"


def summary(name: str, samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"{name:<42} p50 {statistics.median(samples):7.2f} ms   p99 {cuts[98]:7.2f} ms"


async def main(n: int) -> None:
    async with running_system(http=True) as system:
        await ask(system.nc, CreateUser(username="bench", password=SecretStr(PASSWORD)), 10)
        assert system.base_url is not None
        base = system.base_url
        revocations, round_trips = [], []
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(n):
                login = (
                    await http.post(
                        "/api/auth/login", json={"username": "bench", "password": PASSWORD}
                    )
                ).json()
                auth = {"Authorization": f"Bearer {login['session_token']}"}
                started = time.perf_counter()
                await http.get(f"/api/session/{login['session_id']}", headers=auth)
                round_trips.append((time.perf_counter() - started) * 1e3)
                code = None
                async with ws_connect(
                    base.replace("http", "ws") + "/api/runtime/agent",
                    subprotocols=["symphainy.v1", f"bearer.{login['session_token']}"],  # type: ignore[list-item]
                ) as ws:
                    started = time.perf_counter()
                    await http.delete(f"/api/session/{login['session_id']}", headers=auth)
                    try:
                        await ws.recv()
                    except ConnectionClosed as closed:
                        code = closed.rcvd.code if closed.rcvd else None
                    if code != 4404:
                        raise RuntimeError(f"expected close 4404, got {code}")
                    revocations.append((time.perf_counter() - started) * 1e3)
        print(f"{n} sessions, one socket each")
        print(summary("baseline: GET /api/session/{id} (Bearer)", round_trips))
        print(summary("DELETE /api/session/{id} -> socket 4404", revocations))
        ratio = statistics.median(revocations) / statistics.median(round_trips)
        print(f"revocation-to-close / Bearer round trip (medians): {ratio:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200)
    asyncio.run(main(parser.parse_args().n))
