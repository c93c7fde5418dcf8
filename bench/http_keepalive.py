"""Keep-alive HTTP p50 on the real ``symphainy up``, against the same app with TCP_NODELAY forced.

Starts ``.venv/bin/symphainy up`` (embedded NATS, a worker, the Experience Plane) in a
temporary data directory, and the floor: ``floors.py http``, the same Experience Plane app and
server on the same bus, keys and worker, served from a listening socket that forces TCP_NODELAY
(a process of its own, as ``up`` is). The floor is built outside ``symphainy/run.py`` on
purpose: a listening socket there that loses TCP_NODELAY again shows as a ~40 ms delayed-ACK
stall on ``up`` only, a ratio of 5x and more.

Each round times sequential requests on one keep-alive connection per server, alternating
servers: ``GET /healthz`` (no NATS) and a Bearer ``GET /api/sessions`` (token check,
``VerifySession`` and ``ListSessions`` over NATS). The figures: the median of the rounds' p50
ratios, up over floor, for each request. Goal: at most 1.5x.
Run: ``.venv/bin/python bench/http_keepalive.py [--n 300] [--rounds 5] [--quick]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from harness import SYMPHAINY, UP_READY, Process, floor, free_port, median, result

from symphainy.first_run import PASSWORD_FILE

GOAL = 1.5
WARMUP = 30


def p50(call: Callable[[], httpx.Response], n: int) -> float:
    """Median ms of ``n`` sequential calls (after a warm-up); every answer must be a 200."""
    for _ in range(WARMUP):
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        status = call().status_code
        samples.append((time.perf_counter() - started) * 1e3)
        assert status == 200, status
    return median(samples)


def measure(work: Path, n: int, rounds: int) -> None:
    data = work / "data"
    up_argv = [SYMPHAINY, "up", "--port", str(free_port()), "--nats-port", str(free_port())]
    up = Process("up", [*up_argv, "--data-dir", str(data)], UP_READY, work)
    port = str(free_port())
    nodelay = floor("http-floor", work, "http", "--data-dir", str(data), "--port", port)
    with (
        up,
        nodelay,
        httpx.Client(base_url=up.found(2)) as real,
        httpx.Client(base_url=nodelay.found(1)) as forced,
    ):
        password = (data / PASSWORD_FILE).read_text().strip()
        login = real.post("/api/auth/login", json={"username": "admin", "password": password})
        login.raise_for_status()
        bearer = {"Authorization": f"Bearer {login.json()['session_token']}"}
        figures: dict[str, list[tuple[float, float]]] = {"healthz": [], "sessions": []}
        for i in range(rounds):
            for name, path, headers in (
                ("healthz", "/healthz", {}),
                ("sessions", "/api/sessions", bearer),
            ):
                f = p50(lambda: forced.get(path, headers=headers), n)  # noqa: B023
                u = p50(lambda: real.get(path, headers=headers), n)  # noqa: B023
                figures[name].append((u, f))
                print(f"round {i + 1}: GET {path:<14} up p50 {u:6.2f} ms  floor {f:6.2f} ms")
    print(f"{rounds} rounds of {n} sequential keep-alive requests each (medians over rounds)")
    for name, pairs in figures.items():
        print(
            f"{name:<9} symphainy up p50 {median([u for u, _ in pairs]):6.2f} ms   "
            f"TCP_NODELAY floor p50 {median([f for _, f in pairs]):6.2f} ms"
        )
    for name, pairs in figures.items():
        result(f"http_keepalive_{name}", median([u / f for u, f in pairs]), "<=", GOAL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="150 requests x 3 rounds")
    args = parser.parse_args()
    n, rounds = (150, 3) if args.quick else (args.n, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        measure(Path(tmp), n, rounds)


if __name__ == "__main__":
    main()
