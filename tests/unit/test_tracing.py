"""When tracing is on, what it costs when off, and what it reports as each part."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

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


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Both parts traced into memory, each span exported as it ends; the sampler is the SDK's
    from ``OTEL_TRACES_SAMPLER`` (set it before using this fixture)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for part in tracing.Part:
        monkeypatch.setitem(tracing._tracers, part, provider.get_tracer("test"))
    yield exporter
    tracing._tracers.clear()


def _http_app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/session/{session_id}")
    async def session(session_id: str) -> dict[str, str]:
        return {"id": session_id}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {}

    tracing.instrument_app(app)
    return app


async def _get(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get(path, headers=headers)
    return response.status_code


def test_an_http_request_is_a_server_span_named_by_its_route(
    spans: InMemorySpanExporter,
) -> None:
    app = _http_app()
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert asyncio.run(_get(app, "/api/session/s1?code=secret", {"traceparent": caller})) == 200
    assert asyncio.run(_get(app, "/healthz")) == 200  # a probe: not traced

    [span] = spans.get_finished_spans()
    assert span.name == "GET /api/session/{session_id}"
    assert span.kind == SpanKind.SERVER
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    attributes = dict(span.attributes or {})
    assert attributes["http.route"] == "/api/session/{session_id}"
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.response.status_code"] == 200
    assert attributes["url.path"] == "/api/session/s1"
    assert "secret" not in str(attributes), "the query string is not recorded"


def test_a_dropped_request_makes_no_span_yet_tells_the_runtime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for part in tracing.Part:
        monkeypatch.setitem(tracing._tracers, part, provider.get_tracer("test"))
    current: list[trace.Span] = []

    class Bucket:
        @tracing.kv_call
        async def get(self, key: str) -> None:
            current.append(trace.get_current_span())

    class Dispatcher:
        @tracing.executes_intent
        async def handle(
            self, data: bytes, headers: dict[str, str], intent_type: object, handler: object
        ) -> dict[str, str]:
            current.append(trace.get_current_span())
            await Bucket().get("k")
            tracing.record_outcome("ok")
            return headers

    @tracing.sends_intent
    async def send(nc: object, intent: Ping) -> dict[str, str]:
        return await Dispatcher().handle(b"", tracing.inject({}), Ping, None)

    headers = asyncio.run(send(None, Ping(actor="t")))
    assert asyncio.run(_get(_http_app(), "/api/session/s1")) == 200
    # The sender's decision travels (sampled flag off), so the runtime drops the intent too.
    assert set(headers) == {"traceparent"}
    assert not int(headers["traceparent"].rsplit("-", 1)[1], 16) & 1
    # The intent's span is not recording, and its KV call starts none of its own.
    [process, kv] = current
    assert not process.is_recording()
    assert kv is process
    assert exporter.get_finished_spans() == ()


def test_an_intent_kept_is_one_trace_with_its_kv_calls(spans: InMemorySpanExporter) -> None:
    class Bucket:
        _kv = type("KV", (), {"_name": "sessions"})()

        @tracing.kv_call
        async def get(self, key: str) -> None:
            raise TimeoutError("no answer")

    class Dispatcher:
        @tracing.executes_intent
        async def handle(
            self, data: bytes, headers: dict[str, str], intent_type: object, handler: object
        ) -> None:
            with contextlib.suppress(TimeoutError):
                await Bucket().get("k")
            tracing.record_outcome("runtime_unavailable")

    @tracing.sends_intent
    async def send(nc: object, intent: Ping) -> None:
        await Dispatcher().handle(b"", tracing.inject({}), Ping, None)

    asyncio.run(send(None, Ping(actor="t")))
    by_name = {span.name: span for span in spans.get_finished_spans()}
    assert set(by_name) == {"send Ping", "process Ping", "kv get sessions"}
    sent, done, kv = by_name["send Ping"], by_name["process Ping"], by_name["kv get sessions"]
    assert done.parent is not None
    assert done.parent.span_id == sent.context.span_id
    assert kv.parent is not None
    assert kv.parent.span_id == done.context.span_id
    assert {s.context.trace_id for s in by_name.values()} == {sent.context.trace_id}
    assert (sent.attributes or {})["symphainy.intent.type"] == "Ping"
    assert (done.attributes or {})["symphainy.outcome"] == "runtime_unavailable"
    assert done.status.status_code == StatusCode.ERROR
    assert kv.status.status_code == StatusCode.ERROR
    assert [event.name for event in kv.events] == ["exception"]
