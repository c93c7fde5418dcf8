"""When tracing is on, what it costs when off, and what it reports as each part."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace

from bus.settings import Settings
from intents import Ping
from symphainy import run
from telemetry import tracing

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start from no ``OTEL_*`` at all, and leave tracing off."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    yield
    tracing.shutdown()


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_BSP_SCHEDULE_DELAY": "10"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, True),
    ],
)
def test_traces_are_on_only_when_asked_for(environ: dict[str, str], on: bool) -> None:
    assert tracing.enabled(environ) is on


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER=zipkin is not supported"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTLP protocol grpc is not supported: use http/protobuf",
        ),
    ],
)
def test_what_cannot_be_done_is_a_clear_error(environ: dict[str, str], says: str) -> None:
    with pytest.raises(tracing.TracingConfigError, match=says):
        tracing.enabled(environ)


def test_a_component_refuses_to_start_with_an_unsupported_exporter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert run.main(run.runtime(settings)) == 1
    assert "error: OTEL_TRACES_EXPORTER=jaeger is not supported" in capsys.readouterr().err


def test_off_imports_no_sdk_and_adds_no_header() -> None:
    # A fresh interpreter: whether the SDK is imported at all cannot be seen from this one.
    probe = (
        "import sys\n"
        "import symphainy.run, experience.app, runtime_worker.app\n"
        "from telemetry import tracing\n"
        "assert not tracing.setup(tracing.Part.EXPERIENCE, tracing.Part.RUNTIME)\n"
        "assert tracing.inject({'X-Correlation-Id': 'c'}) == {'X-Correlation-Id': 'c'}\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk'))\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_each_part_is_its_own_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert tracing.setup(tracing.Part.EXPERIENCE, tracing.Part.RUNTIME)
    names = {part: p.resource.attributes["service.name"] for part, p in tracing._providers.items()}
    assert names == {
        tracing.Part.EXPERIENCE: "symphainy-experience",
        tracing.Part.RUNTIME: "symphainy-runtime",
    }


def test_otel_service_name_overrides_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing-edge")
    assert tracing.setup(tracing.Part.EXPERIENCE, tracing.Part.RUNTIME)
    names = {p.resource.attributes["service.name"] for p in tracing._providers.values()}
    assert names == {"billing-edge"}


def test_the_span_is_current_while_an_intent_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the JSON log formatter relies on: get_current_span() inside the traced code.
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    tracing.setup(tracing.Part.EXPERIENCE)
    seen: list[tuple[dict[str, str], str]] = []

    @tracing.sends_intent
    async def send(nc: object, intent: Ping) -> None:
        current = trace.get_current_span().get_span_context()
        seen.append((tracing.inject({}), format(current.trace_id, "032x")))

    asyncio.run(send(None, Ping(actor="t")))
    [(headers, trace_id)] = seen
    assert set(headers) == {"traceparent"}
    assert headers["traceparent"].split("-")[1] == trace_id != format(0, "032x")
