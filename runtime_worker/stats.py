"""A worker's figures: intents executed (Prometheus, and its ``nats micro`` endpoints), KV call
latency, agent runs, the audit stream's size.

``IntentStats`` is fed by ``Dispatcher.handle``, the one entry of every request-reply intent.
A ``nats micro`` error is a reply that says the service failed (``SERVICE_ERRORS``): a refusal
the caller earned (``session_revoked``, ``invalid_credentials``, ``not_found``...) is the
service working, and is counted only by code, in ``symphainy_runtime_intents_executed_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from time import perf_counter
from typing import Any, ParamSpec, TypeVar

from nats.aio.client import Client
from nats.micro.service import EndpointStats
from prometheus_client import Counter, Histogram

from bus import names
from intents import REPLY_OF, Intent
from telemetry import metrics, record
from telemetry.micro import ServiceResponder

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Codes that mean the runtime failed the caller, not that the caller was refused.
SERVICE_ERRORS = frozenset({"internal", "runtime_unavailable", "deadline_exceeded"})
# How often a worker reads the audit stream's size for its gauges.
# How long a stopping worker waits for the refresher to notice.
AUDIT_STOP_S = 1.0
AUDIT_REFRESH_S = 15.0


class _Endpoint:
    """The figures of one intent type on one worker."""

    __slots__ = ("codes", "duration", "errors", "intent_type", "last_error", "requests", "seconds")

    def __init__(self, intent_type: type[Intent]) -> None:
        self.intent_type = intent_type
        self.requests = 0
        self.errors = 0
        self.seconds = 0.0
        self.last_error = ""
        self.duration: Histogram = record.execution_seconds(intent_type.__name__)
        self.codes: dict[str, Counter] = {}

    def to_stats(self) -> EndpointStats:
        total_ns = int(self.seconds * 1e9)
        return EndpointStats(
            name=self.intent_type.__name__,
            subject=self.intent_type.subject,
            queue_group=names.RUNTIME_QUEUE,
            num_requests=self.requests,
            num_errors=self.errors,
            processing_time=total_ns,
            average_processing_time=total_ns // self.requests if self.requests else 0,
            last_error=self.last_error,
        )


class IntentStats:
    """Intents one worker executed: its ``nats micro`` endpoints, and the Prometheus series."""

    def __init__(self, intent_types: tuple[type[Intent], ...] = tuple(REPLY_OF)) -> None:
        self._endpoints = {t: _Endpoint(t) for t in intent_types}

    def record(self, intent_type: type[Intent], code: str, started: float) -> None:
        """One intent answered with ``code``, received at ``started`` (``perf_counter()``)."""
        seconds = perf_counter() - started
        endpoint = self._endpoints.get(intent_type)
        if endpoint is None:
            endpoint = self._endpoints[intent_type] = _Endpoint(intent_type)
        endpoint.requests += 1
        endpoint.seconds += seconds
        if code in SERVICE_ERRORS:
            endpoint.errors += 1
            endpoint.last_error = code
        counter = endpoint.codes.get(code)
        if counter is None:
            counter = endpoint.codes[code] = record.executed(intent_type.__name__, code)
        counter.inc()
        endpoint.duration.observe(seconds)

    def endpoints(self) -> list[EndpointStats]:
        """Every endpoint's figures, as ``nats micro stats`` shows them."""
        return [endpoint.to_stats() for endpoint in self._endpoints.values()]


def agent_label(agents: Mapping[str, object], name: str) -> str:
    """The ``agent`` label of a run: the agent's name if it runs here, else ``unknown`` (the
    name comes from the client, so it may be anything)."""
    return name if name in agents else "unknown"


def agent_run(agent: str, code: str, seconds: float | None) -> None:
    """An agent run finished, as ``RunAgent`` executed too (``seconds``: None when it was
    cancelled before it ran)."""
    record.agent_runs(agent, code).inc()
    record.executed("RunAgent", code).inc()
    if seconds is not None:
        record.execution_seconds("RunAgent").observe(seconds)


def agent_event(agent: str) -> None:
    """An agent sent one event."""
    record.agent_events(agent).inc()


Call = Callable[P, Coroutine[Any, Any, T]]


def kv_timed(op: str) -> Callable[[Call[P, T]], Call[P, T]]:
    """Time a ``NatsBucket`` method into ``symphainy_runtime_kv_duration_seconds`` as ``op``,
    by bucket (failed calls too: a timeout is the latency an operator needs to see)."""

    def wrap(call: Call[P, T]) -> Call[P, T]:
        @functools.wraps(call)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> T:
            started = perf_counter()
            try:
                return await call(*args, **kwargs)
            finally:
                record.kv_call(_bucket_name(args[0]), op, perf_counter() - started)

        return timed

    return wrap


def _bucket_name(bucket: Any) -> str:
    return str(getattr(bucket._kv, "_name", "unknown"))  # nats-py's KeyValue keeps it there


def _package_version() -> str:
    try:
        return version("symphainy")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


@dataclass
class WorkerTelemetry:
    """A worker's ``nats micro`` responder and its audit stream gauge refresher."""

    service: ServiceResponder
    refresher: asyncio.Task[None]
    stopping: asyncio.Event

    @classmethod
    async def start(cls, nc: Client, worker_id: str, stats: IntentStats) -> WorkerTelemetry:
        """Answer ``$SRV`` requests as ``symphainy-runtime`` (id: the worker id), and keep the
        audit stream gauges current."""
        service = ServiceResponder(
            nc,
            name=names.RUNTIME_SERVICE,
            version=_package_version(),
            service_id=worker_id,
            description="symphainy runtime worker: executes intents",
            endpoints=stats.endpoints,
            metadata={"worker_id": worker_id},
        )
        await service.start()
        stopping = asyncio.Event()
        refresher = asyncio.create_task(
            _refresh_audit_stream(nc, stopping), name="audit-stream-gauge"
        )
        return cls(service, refresher, stopping)

    async def stop(self) -> None:
        """Stop answering and refreshing.

        The refresher is told by an event as well as cancelled: Python 3.11's ``wait_for`` (under
        nats-py's request) can lose a cancellation that lands as its reply arrives, and a
        refresher that missed it looped on for ever (a test's teardown hung on it, 1 run in 4).
        """
        self.stopping.set()
        self.refresher.cancel()
        await asyncio.wait({self.refresher}, timeout=AUDIT_STOP_S)
        await self.service.stop()


async def _refresh_audit_stream(nc: Client, stopping: asyncio.Event) -> None:
    js = nc.jetstream()
    while not stopping.is_set():
        try:
            info = await js.stream_info(names.INTENTS_STREAM)
        except Exception as exc:  # NATS away for a while: the gauges keep their last value
            log.debug("could not read the audit stream's size: %s", exc or type(exc).__name__)
        else:
            metrics.AUDIT_STREAM_BYTES.set(info.state.bytes)
            if info.config.max_bytes is not None:
                metrics.AUDIT_STREAM_MAX_BYTES.set(info.config.max_bytes)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), AUDIT_REFRESH_S)
