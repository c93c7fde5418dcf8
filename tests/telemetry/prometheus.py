"""A real Prometheus (Debian's ``prometheus`` package) scraping one target on loopback."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

START_TIMEOUT_S = 30.0
LISTENING = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')
READY = "Server is ready to receive web requests."


@pytest.fixture
def prometheus_binary() -> str:
    """The ``prometheus`` binary; missing, a skip (a failure with CI=true)."""
    found = shutil.which("prometheus")
    if found is None:
        message = "Debian's prometheus is not installed (apt-get install -y prometheus)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}, and CI must run it")
        pytest.skip(f"{message}; CI=true makes this a failure")
    return found


@dataclass
class Prometheus:
    """A running Prometheus and its HTTP API."""

    url: str

    async def value(self, expr: str) -> float | None:
        """The value of an instant query that yields one series, or None if it yields none."""
        async with httpx.AsyncClient(base_url=self.url) as http:
            response = await http.get("/api/v1/query", params={"query": expr})
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        results = body["data"]["result"]
        assert len(results) <= 1, f"{expr} matched {len(results)} series: {results}"
        return float(results[0]["value"][1]) if results else None

    async def series(self, expr: str) -> list[dict[str, str]]:
        """The label sets an instant query yields."""
        async with httpx.AsyncClient(base_url=self.url) as http:
            response = await http.get("/api/v1/query", params={"query": expr})
        response.raise_for_status()
        return [r["metric"] for r in response.json()["data"]["result"]]

    async def until(self, expr: str, expected: float, timeout: float = 20.0) -> None:
        """Wait until ``expr`` evaluates to ``expected`` (a scrape brings it); fail after
        ``timeout`` with the last value seen."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        seen = await self.value(expr)
        while seen != expected:
            assert loop.time() < give_up, f"{expr} is {seen}, expected {expected}"
            await asyncio.sleep(0.2)
            seen = await self.value(expr)


@asynccontextmanager
async def running_prometheus(
    binary: str, workdir: Path, target: str, interval: str = "1s"
) -> AsyncIterator[Prometheus]:
    """Prometheus scraping ``target`` (``host:port``) every ``interval``, on a port it picks."""
    process, log_path = await asyncio.to_thread(_start, binary, workdir, target, interval)
    try:
        port = await _ready(process, log_path)
        yield Prometheus(f"http://127.0.0.1:{port}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)


def _start(
    binary: str, workdir: Path, target: str, interval: str
) -> tuple[subprocess.Popen[bytes], Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        "scrape_configs:\n"
        "  - job_name: symphainy\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                "--web.listen-address=127.0.0.1:0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, log_path


async def _ready(process: subprocess.Popen[bytes], log_path: Path) -> int:
    """The port Prometheus bound, once it says it is ready."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + START_TIMEOUT_S
    while True:
        text = await asyncio.to_thread(log_path.read_text, errors="replace")
        found = LISTENING.search(text)
        if found and READY in text:
            return int(found.group(1))
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited with {process.returncode}:\n{text}")
        assert loop.time() < give_up, f"prometheus not ready in {START_TIMEOUT_S} s:\n{text}"
        await asyncio.sleep(0.05)
