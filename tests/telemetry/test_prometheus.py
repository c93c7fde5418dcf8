"""A real Prometheus scrapes a running system: after a login, a failed login and a socket echo,
its HTTP API has the intent counters (by intent and code) and the latency histograms, on both
sides of the bus, and HTTP requests by route template."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from telemetry.exposition import serve
from tests.stack import PASSWORD, Stack, frames_until_final
from tests.telemetry.prometheus import running_prometheus

pytestmark = pytest.mark.ws


def series(name: str, **labels: str) -> str:
    """A PromQL selector ``name{k="v",...}``."""
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


SENT = "symphainy_experience_intents_sent_total"
EXECUTED = "symphainy_runtime_intents_executed_total"
HTTP = "symphainy_experience_http_requests_total"
BAD = "invalid_credentials"
SESSION = "/api/session/{session_id}"
# Series and how much one run of the traffic below adds to each.
EXPECTED = {
    series(SENT, intent="AuthenticateUser", code="ok"): 1,
    series(SENT, intent="AuthenticateUser", code=BAD): 1,
    series(SENT, intent="CreateSession", code="ok"): 1,
    series(SENT, intent="VerifySession", code="ok"): 2,
    series(SENT, intent="RunAgent", code="ok"): 1,
    series("symphainy_experience_intent_duration_seconds_count", intent="AuthenticateUser"): 2,
    series(
        "symphainy_experience_intent_duration_seconds_bucket", intent="VerifySession", le="+Inf"
    ): 2,
    series(EXECUTED, intent="AuthenticateUser", code="ok"): 1,
    series(EXECUTED, intent="AuthenticateUser", code=BAD): 1,
    series(EXECUTED, intent="VerifySession", code="ok"): 2,
    series(EXECUTED, intent="RunAgent", code="ok"): 1,
    series("symphainy_runtime_intent_duration_seconds_count", intent="CreateSession"): 1,
    series("symphainy_runtime_intent_duration_seconds_bucket", intent="RunAgent", le="+Inf"): 1,
    series("symphainy_runtime_agent_runs_total", agent="echo", code="ok"): 1,
    series("symphainy_runtime_agent_events_total", agent="echo"): 2,
    series("symphainy_experience_login_failures_total", code=BAD): 1,
    series(HTTP, route="/api/auth/login", method="POST", status="200"): 1,
    series(HTTP, route="/api/auth/login", method="POST", status="401"): 1,
    series(HTTP, route=SESSION, method="GET", status="200"): 1,
    series("symphainy_experience_socket_admissions_total", code="accepted"): 1,
    series("symphainy_experience_socket_closes_total", code="1000"): 1,
    series("symphainy_experience_socket_frames_total", direction="in"): 1,
    series("symphainy_experience_socket_frames_total", direction="out"): 4,
    series("symphainy_runtime_kv_duration_seconds_count", bucket="sessions", op="create"): 1,
}


def local_value(selector: str) -> float:
    """The value of ``name{labels}`` in this process's registry (0 if absent)."""
    name, _, labels = selector.partition("{")
    pairs = dict(part.split("=", 1) for part in labels.rstrip("}").split(",")) if labels else {}
    found = REGISTRY.get_sample_value(name, {k: v.strip('"') for k, v in pairs.items()})
    return found or 0.0


async def test_prometheus_scrapes_intent_counters_and_histograms(
    stack: Stack, prometheus_binary: str, tmp_path: Path
) -> None:
    before = {selector: local_value(selector) for selector in EXPECTED}
    metrics = serve("127.0.0.1", 0)
    try:
        target = f"127.0.0.1:{metrics.port}"
        async with running_prometheus(prometheus_binary, tmp_path / "prometheus", target) as prom:
            async with httpx.AsyncClient(base_url=stack.base_url) as http:
                wrong = await http.post(
                    "/api/auth/login", json={"username": "alice", "password": PASSWORD + "x"}
                )
                assert wrong.status_code == 401
                login = (
                    await http.post(
                        "/api/auth/login", json={"username": "alice", "password": PASSWORD}
                    )
                ).json()
                token, session_id = login["session_token"], login["session_id"]
                mine = await http.get(
                    f"/api/session/{session_id}", headers={"Authorization": f"Bearer {token}"}
                )
                assert mine.status_code == 200
            async with stack.open(token) as ws:
                await ws.send(
                    '{"type": "intent", "id": "e", "intent": "echo", "payload": {"items": [1, 2]}}'
                )
                frames = await frames_until_final(ws, "e")
                assert [f["type"] for f in frames] == ["ack", "event", "event", "result"]

            for selector, added in EXPECTED.items():
                await prom.until(selector, before[selector] + added)
            # The route is the template: no series carries the session id.
            raw = await prom.series(f'{{__name__=~"symphainy_.*",route=~".*{session_id}.*"}}')
            assert raw == []
            assert await prom.value("symphainy_experience_sockets_open") == local_value(
                "symphainy_experience_sockets_open"
            )
    finally:
        metrics.stop()
