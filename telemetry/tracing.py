"""OpenTelemetry traces across the bus, configured by the standard ``OTEL_*`` variables.

One login is one trace: the Experience Plane's HTTP span and a client span per intent sent, the
runtime's span per intent executed and a span per KV call, joined by W3C trace context in the
NATS message headers. A socket's agent frame starts a trace of its own: the frame, the runtime's
run, and each event and result delivered back to the socket.

Each part has its own ``TracerProvider`` and ``service.name`` (``symphainy-experience``,
``symphainy-runtime``), so ``symphainy up`` reports two services from one process;
``OTEL_SERVICE_NAME`` (or ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``) overrides both.

Off unless configured: ``OTEL_TRACES_EXPORTER`` set to ``otlp`` or ``console``, or an OTLP
endpoint given (``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``);
``OTEL_TRACES_EXPORTER=none`` or ``OTEL_SDK_DISABLED=true`` turn it off. Off costs one dict look-up
per hook: the SDK is never imported, no span is made, no header is added. The OTLP exporter
speaks ``http/protobuf``; endpoint, headers, batching and sampling are the SDK's own ``OTEL_*``
variables (these are the OpenTelemetry standard, read here and by the SDK, not ``Settings``).

The hooks are decorators and one-line calls in the modules they trace; spans are made current
while the traced code runs, so log records can carry the trace and span ids.
"""

from __future__ import annotations

import enum
import functools
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from bus import names

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "Part",
    "TracingConfigError",
    "enabled",
    "executes_intent",
    "inject",
    "instrument_app",
    "kv_call",
    "receives_agent_reply",
    "receives_frame",
    "record_outcome",
    "runs_agent",
    "sends_intent",
    "set_correlation",
    "setup",
    "shutdown",
]


class Part(enum.Enum):
    """A traced part of the system, with its default ``service.name``."""

    EXPERIENCE = "symphainy-experience"
    RUNTIME = "symphainy-runtime"


class TracingConfigError(ValueError):
    """The ``OTEL_*`` variables ask for something this build cannot do; the message says what."""


# Attribute names: OpenTelemetry's messaging conventions where they fit, ours for the rest.
SYSTEM: Final = "messaging.system"
DESTINATION: Final = "messaging.destination.name"
OPERATION: Final = "messaging.operation.type"
INTENT_TYPE: Final = "symphainy.intent.type"
INTENT_ID: Final = "symphainy.intent.id"
CORRELATION_ID: Final = "symphainy.correlation_id"
OUTCOME: Final = "symphainy.outcome"
KV_BUCKET: Final = "symphainy.kv.bucket"
KV_OPERATION: Final = "symphainy.kv.operation"

# Outcomes that are the system's fault (the span is marked as an error); the rest are answers.
SERVER_FAULTS: Final = frozenset({"internal", "runtime_unavailable", "deadline_exceeded"})
# Probes are not traced: an orchestrator polls them every few seconds.
DEFAULT_EXCLUDED_URLS: Final = "/healthz,/readyz"

_tracers: dict[Part, Tracer] = {}
_providers: dict[Part, TracerProvider] = {}
_excluded_urls: list[str] = [DEFAULT_EXCLUDED_URLS]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def enabled(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` asks for traces; raises ``TracingConfigError`` for what we cannot do."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    if exporter not in ("", "otlp", "console"):
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={exporter} is not supported: use otlp, console or none"
        )
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    if protocol not in ("", "http/protobuf"):
        raise TracingConfigError(
            f"OTLP protocol {protocol} is not supported: use http/protobuf (port 4318)"
        )
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return bool(exporter or endpoint)


def setup(*parts: Part) -> bool:
    """Give each of ``parts`` its tracer if the environment asks for traces; whether it did.

    Each part gets its own provider (own ``service.name``), batching spans to the exporter; the
    provider flushes at exit. The SDK reads its own variables (endpoint, batching, sampling).
    """
    environ = os.environ
    if not enabled(environ):
        return False
    # The SDK only when asked for: off means none of it is even imported.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    _excluded_urls[0] = environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", DEFAULT_EXCLUDED_URLS)
    for part in parts:
        if part in _providers:
            continue
        resource = Resource.create({})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: part.value}))
        exporter: SpanExporter
        if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
            exporter = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        _providers[part] = provider
        _tracers[part] = provider.get_tracer("symphainy")
    return True


def shutdown() -> None:
    """Flush and stop every provider (also done at exit); tracing is off afterwards."""
    _tracers.clear()
    while _providers:
        _providers.popitem()[1].shutdown()


def inject(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with the current trace context added (``traceparent``), if tracing is on.

    A request the sampler dropped gets its ``traceparent`` too (flags ``00``), so the runtime
    follows the decision instead of sampling the intent on its own."""
    if _tracers:
        propagate.inject(headers)
    return headers


def set_correlation(correlation_id: str) -> None:
    """Note the correlation id on the current span (the HTTP request's)."""
    if _tracers:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(CORRELATION_ID, correlation_id)


def record_outcome(code: str) -> None:
    """Note an intent's outcome (``ok`` or its error code) on the current span."""
    if _tracers:
        span = trace.get_current_span()
        if span.is_recording():
            _outcome(span, code)


def _outcome(span: trace.Span, code: str) -> None:
    span.set_attribute(OUTCOME, code)
    if code in SERVER_FAULTS:
        span.set_status(Status(StatusCode.ERROR, code))


def _failed(span: trace.Span, exc: BaseException) -> None:
    """What ``start_as_current_span`` would note of an exception leaving the span."""
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


_NO_PARENT: Final = context.Context()
_TRACEPARENT: Final = "traceparent"


def _extract(headers: Mapping[str, str] | None) -> context.Context:
    """The sender's context from ``headers``; a new trace when they carry none (no parse)."""
    if not headers or _TRACEPARENT not in headers:
        return _NO_PARENT
    return propagate.extract(headers)


class _Current:
    """``span`` current for a block, ended after it, with an exception leaving it noted: what
    ``start_as_current_span`` does, as one plain object (no generator context managers)."""

    __slots__ = ("span", "token")

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def __enter__(self) -> trace.Span:
        self.token = context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            _failed(self.span, exc)
        context.detach(self.token)
        self.span.end()


def _message_attributes(
    operation: str, headers: Mapping[str, str], **more: str
) -> dict[str, AttributeValue]:
    """The messaging attributes of a span about one message on the bus."""
    return {
        SYSTEM: "nats",
        OPERATION: operation,
        **more,
        INTENT_ID: headers.get(names.INTENT_ID_HEADER, ""),
        CORRELATION_ID: headers.get(names.CORRELATION_HEADER, ""),
    }


# The hooks below are on every intent's path, traced or not: each starts its span with
# ``start_span`` and makes it current with a plain attach/detach (``start_as_current_span`` is
# two generator context managers deep), and builds its attributes only when the sampler kept
# the span. A dropped span costs the SDK's sampling decision and nothing else.


def sends_intent(fn: F) -> F:
    """Trace ``request(nc, intent, reply_type, timeout)``: a client span per intent sent, current
    while it is sent (so ``inject`` puts it in the headers), with the outcome."""

    @functools.wraps(fn)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        tracer = _tracers.get(Part.EXPERIENCE)
        if tracer is None:
            return await fn(*args, **kwargs)
        intent = args[1] if len(args) > 1 else kwargs["intent"]
        name = type(intent).__name__
        span = tracer.start_span(f"send {name}", kind=SpanKind.CLIENT)
        token = context.attach(trace.set_span_in_context(span))
        try:
            if not span.is_recording():
                return await fn(*args, **kwargs)
            span.set_attributes(
                {
                    SYSTEM: "nats",
                    OPERATION: "send",
                    DESTINATION: intent.subject,
                    INTENT_TYPE: name,
                    INTENT_ID: intent.intent_id,
                    CORRELATION_ID: intent.correlation_id,
                }
            )
            try:
                reply = await fn(*args, **kwargs)
            except Exception as exc:
                _outcome(span, str(getattr(exc, "code", "internal")))
                raise
            _outcome(span, "ok")
            return reply
        finally:
            context.detach(token)
            span.end()

    return cast(F, traced)


def executes_intent(fn: F) -> F:
    """Trace ``Dispatcher.handle(self, data, headers, intent_type, handler)``: a server span per
    intent executed, child of the sender's span carried in ``headers``, current while the handler
    runs (``record_outcome`` adds the outcome)."""

    @functools.wraps(fn)
    async def traced(
        self: Any, data: bytes, headers: Mapping[str, str] | None, intent_type: Any, handler: Any
    ) -> Any:
        tracer = _tracers.get(Part.RUNTIME)
        if tracer is None:
            return await fn(self, data, headers, intent_type, handler)
        name = intent_type.__name__
        span = tracer.start_span(f"process {name}", context=_extract(headers), kind=SpanKind.SERVER)
        with _Current(span):
            if span.is_recording():
                span.set_attributes(
                    _message_attributes(
                        "process",
                        headers or {},
                        **{DESTINATION: intent_type.subject, INTENT_TYPE: name},
                    )
                )
            return await fn(self, data, headers, intent_type, handler)

    return cast(F, traced)


def kv_call(fn: F) -> F:
    """Trace a ``NatsBucket`` method: a client span per KV call made within a traced intent that
    the sampler kept (calls outside one, at start-up say, or under a dropped intent, are not
    traced: no span is even started)."""
    operation = fn.__name__

    @functools.wraps(fn)
    async def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        tracer = _tracers.get(Part.RUNTIME)
        if tracer is None or not trace.get_current_span().is_recording():
            return await fn(self, *args, **kwargs)
        bucket = str(getattr(getattr(self, "_kv", None), "_name", ""))
        span = tracer.start_span(
            f"kv {operation} {bucket}",
            kind=SpanKind.CLIENT,
            attributes={KV_BUCKET: bucket, KV_OPERATION: operation},
        )
        with _Current(span):
            return await fn(self, *args, **kwargs)

    return cast(F, traced)


def runs_agent(fn: F) -> F:
    """Trace ``AgentRunner._handle(self, msg)``: a consumer span per agent run, child of the
    socket frame's span carried in the JetStream message's headers."""

    @functools.wraps(fn)
    async def traced(self: Any, msg: Any) -> Any:
        tracer = _tracers.get(Part.RUNTIME)
        if tracer is None:
            return await fn(self, msg)
        headers = msg.headers or {}
        span = tracer.start_span(
            "process RunAgent", context=_extract(headers), kind=SpanKind.CONSUMER
        )
        with _Current(span):
            if span.is_recording():
                span.set_attributes(
                    _message_attributes(
                        "process", headers, **{DESTINATION: msg.subject, INTENT_TYPE: "RunAgent"}
                    )
                )
            return await fn(self, msg)

    return cast(F, traced)


def receives_frame(fn: F) -> F:
    """Trace ``AgentChannel.on_frame``: each socket frame starts its own trace (linked to the
    socket's span), so one agent intent is one trace however long the socket lives."""

    @functools.wraps(fn)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        tracer = _tracers.get(Part.EXPERIENCE)
        if tracer is None:
            return await fn(*args, **kwargs)
        socket = trace.get_current_span().get_span_context()
        span = tracer.start_span(
            "receive agent frame",
            context=_NO_PARENT,
            kind=SpanKind.CONSUMER,
            links=[Link(socket)] if socket.is_valid else None,
        )
        with _Current(span):
            if span.is_recording():
                span.set_attribute(OPERATION, "receive")
            return await fn(*args, **kwargs)

    return cast(F, traced)


def receives_agent_reply(fn: F) -> F:
    """Trace ``AgentChannel._on_reply(self, msg)``: an agent event or result reaching the gate,
    child of the run that sent it."""

    @functools.wraps(fn)
    async def traced(self: Any, msg: Any) -> Any:
        tracer = _tracers.get(Part.EXPERIENCE)
        if tracer is None:
            return await fn(self, msg)
        headers = msg.headers or {}
        span = tracer.start_span(
            "deliver agent reply", context=_extract(headers), kind=SpanKind.CONSUMER
        )
        with _Current(span):
            if span.is_recording():
                span.set_attributes(_message_attributes("receive", headers))
            return await fn(self, msg)

    return cast(F, traced)


def instrument_app(app: FastAPI) -> None:
    """A server span per HTTP request (and per socket's lifetime), probes excluded, if the
    Experience Plane is traced: ``telemetry.http.HttpTracing``, outermost."""
    tracer = _tracers.get(Part.EXPERIENCE)
    if tracer is None:
        return
    from telemetry.http import HttpTracing

    patterns = [p.strip() for p in _excluded_urls[0].split(",") if p.strip()]
    excluded = re.compile("|".join(patterns)) if patterns else None
    app.add_middleware(HttpTracing, tracer=tracer, excluded=excluded)
