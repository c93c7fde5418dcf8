"""``symphainy up --metrics-port P`` as a real process: one ``/metrics`` on loopback with the
runtime's and the Experience Plane's families; ``--metrics-port`` on every serving command."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from bus.settings import Settings
from symphainy.cli import build_parser, settings_from
from tests.e2e.test_up import ADMIN_LINE, START_TIMEOUT_S, _env, free_port


@pytest.mark.e2e
async def test_up_serves_the_metrics_of_everything_it_runs(tmp_path: Path) -> None:
    metrics_port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "symphainy", "up", "--port", "0", "--nats-port", str(free_port()),
        "--data-dir", str(tmp_path / "data"), "--metrics-port", str(metrics_port),
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env=_env(),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        metrics_url = url = password = None
        while url is None:
            line = (await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)).decode()
            assert line, f"symphainy up exited early with {await process.wait()}"
            if found := re.match(r"metrics: (\S+)", line):
                metrics_url = found.group(1)
            if found := ADMIN_LINE.search(line):
                password = (await asyncio.to_thread(Path(found.group(2)).read_text)).strip()
            if found := re.search(r"symphainy is up \(NATS \S+\): (http://\S+)", line):
                url = found.group(1)
        assert metrics_url == f"http://127.0.0.1:{metrics_port}/metrics"
        async with httpx.AsyncClient() as http:
            login = await http.post(
                f"{url}/api/auth/login", json={"username": "admin", "password": password}
            )
            assert login.status_code == 200
            scraped = await http.get(metrics_url)
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), 15) == 0

    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}

    def value(family: str, sample: str, **labels: str) -> float:
        return sum(
            s.value
            for s in families[family].samples
            if s.name == sample and labels.items() <= s.labels.items()
        )

    executed = "symphainy_runtime_intents_executed"
    # Executed by the worker process (up's child), merged into up's exposition under its number.
    assert value(executed, f"{executed}_total", intent="AuthenticateUser", code="ok") == 1
    assert value(executed, f"{executed}_total", worker="1", intent="CreateSession", code="ok") == 1
    sent = "symphainy_experience_intents_sent"
    assert value(sent, f"{sent}_total", intent="AuthenticateUser", code="ok") == 1
    requests = "symphainy_experience_http_requests"
    assert value(requests, f"{requests}_total", route="/api/auth/login", status="200") == 1
    kv = "symphainy_runtime_kv_duration_seconds"
    assert value(kv, f"{kv}_count", bucket="sessions", op="create") >= 1
    # The audit stream's cap is read from the stream when the worker starts.
    cap = "symphainy_runtime_audit_stream_max_bytes"
    assert value(cap, cap) == Settings().audit_max_bytes


@pytest.mark.unit
@pytest.mark.parametrize("command", ["up", "runtime", "experience"])
def test_every_serving_command_takes_a_metrics_port(command: str) -> None:
    args = build_parser().parse_args([command, "--metrics-port", "9464"])
    settings = settings_from(args)
    assert settings.metrics_port == 9464
    assert settings.metrics_host == "127.0.0.1"
    assert settings_from(build_parser().parse_args([command])).metrics_port is None


@pytest.mark.unit
@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com"])
def test_metrics_are_served_on_loopback_only(host: str) -> None:
    with pytest.raises(ValidationError, match="metrics_host must be a loopback address"):
        Settings(metrics_host=host, _env_file=None)  # type: ignore[call-arg]
