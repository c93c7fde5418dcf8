"""``SYMPHAINY_LOG_FORMAT=json`` on the real ``symphainy up``: every line of its log is JSON."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import httpx

from tests.e2e.test_up import START_TIMEOUT_S, _env, free_port

KEYS = {"time", "level", "logger", "message", "correlation_id", "trace_id", "span_id"}


async def run_up_once(tmp_path: Path, env: dict[str, str]) -> bytes:
    """Start ``symphainy up``, make it log (a login with a hostile name), stop it; its stderr."""
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "symphainy", "up", "--port", "0",
            "--nats-port", str(free_port()), "--data-dir", str(tmp_path / "data"),
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=log, env=_env() | env,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            while True:
                line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
                assert line, f"symphainy up exited early with {await process.wait()}"
                if found := re.search(rb"symphainy is up \(NATS \S+\): (http://\S+)", line):
                    url = found.group(1).decode()
                    break
            async with httpx.AsyncClient(base_url=url) as http:
                body = {"username": "x\n{\x1b[31m\u2028", "password": "p"}
                headers = {"X-Correlation-Id": "login-under-watch"}
                response = await http.post("/api/auth/login", json=body, headers=headers)
                assert response.status_code == 401
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), 15) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    return log_path.read_bytes()


async def test_every_line_of_up_is_a_json_object(tmp_path: Path) -> None:
    log = await run_up_once(tmp_path, {"SYMPHAINY_LOG_FORMAT": "json"})
    assert b"\x1b" not in log
    entries = [json.loads(line) for line in log.decode().splitlines()]
    assert all(set(entry) == KEYS for entry in entries), entries
    loggers = {entry["logger"] for entry in entries}
    # Our own, uvicorn's (start-up and access lines) and FastStream's (at shutdown) alike.
    assert {"runtime_worker.app", "uvicorn.error", "uvicorn.access", "symphainy.run"} <= loggers
    assert any(name.startswith("faststream") for name in loggers), loggers
    assert any(entry["message"] == "symphainy stopped" for entry in entries)
    assert all(entry["level"] in {"DEBUG", "INFO", "WARNING", "ERROR"} for entry in entries)
    # The request's correlation id is on the lines written while handling it, in both processes:
    # the Experience Plane's access line and the worker's line about the refused login.
    watched = {e["logger"] for e in entries if e["correlation_id"] == "login-under-watch"}
    assert {"uvicorn.access", "runtime_worker.dispatch"} <= watched, entries


async def test_the_text_log_has_no_colour_codes_when_not_on_a_terminal(tmp_path: Path) -> None:
    log = await run_up_once(tmp_path, {})
    assert b"\x1b" not in log
    assert b"faststream" in log, "FastStream's shutdown lines must be there for this to mean much"
    record = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S+: ")
    for line in log.decode().splitlines():
        assert record.match(line) or line.startswith("  "), line
