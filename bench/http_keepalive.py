"""Keep-alive HTTP latency of the real ``symphainy up`` command, as a user runs it.

Starts ``symphainy up`` (embedded NATS, a worker, the Experience Plane) in a temporary data
directory, logs in as ``admin`` and times sequential requests on one keep-alive connection:
a Bearer ``GET /api/sessions`` (token check, ``VerifySession`` and ``ListSessions`` over NATS)
against ``GET /healthz`` (no NATS) in the same run. A delayed-ACK stall shows on both as ~40 ms.
Run: ``.venv/bin/python bench/http_keepalive.py [--n 500]``.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

UP = re.compile(r"symphainy is up \(NATS \S+\): (http://\S+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def p50(call: Callable[[], httpx.Response], n: int) -> float:
    for _ in range(50):
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        assert call().status_code == 200
        samples.append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples)


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "symphainy", "up", "--port", str(free_port())]
        command += ["--nats-port", str(free_port()), "--data-dir", str(Path(tmp) / "data")]
        up = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert up.stdout is not None
            url = None
            while url is None:
                line = up.stdout.readline()
                assert line, "symphainy up exited"
                if found := UP.search(line):
                    url = found.group(1)
            password = (Path(tmp) / "data" / "admin-password").read_text().strip()
            with httpx.Client(base_url=url) as http:
                login = http.post(
                    "/api/auth/login", json={"username": "admin", "password": password}
                )
                bearer = {"Authorization": f"Bearer {login.json()['session_token']}"}
                sessions = p50(lambda: http.get("/api/sessions", headers=bearer), n)
                health = p50(lambda: http.get("/healthz"), n)
        finally:
            up.terminate()
            up.wait(15)
    print(f"symphainy up, one keep-alive connection, {n} sequential requests each")
    print(f"GET /healthz                 p50 {health:6.2f} ms")
    print(
        f"Bearer GET /api/sessions     p50 {sessions:6.2f} ms  ({sessions / health:.2f}x healthz)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500)
    main(parser.parse_args().n)
