"""Recording into the metrics of ``telemetry.metrics``, cheaply, from one-line hooks.

Label children are bound once per label set and kept (``Children``): on the hot path a record
is a dict lookup and the child's own increment or observation, not ``labels()`` with its lock
and label validation each time. Every label value here comes from a bounded set (intent class
names, wire error codes, close codes, route templates), never from raw client input.
"""

from __future__ import annotations

import resource
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from telemetry import metrics

M = TypeVar("M", Counter, Gauge, Histogram)


class Children(Generic[M]):
    """The label children of one metric, bound on first use and kept."""

    __slots__ = ("_bound", "_metric")

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._bound: dict[tuple[str, ...], M] = {}

    def __call__(self, *labels: str) -> M:
        """The child for ``labels`` (in the metric's label order)."""
        child = self._bound.get(labels)
        if child is None:
            child = self._bound[labels] = self._metric.labels(*labels)
        return child


_sent = Children(metrics.INTENTS_SENT)
_round_trip = Children(metrics.INTENT_ROUND_TRIP_SECONDS)
_kv = Children(metrics.KV_SECONDS)
_admissions = Children(metrics.SOCKET_ADMISSIONS)
_closes = Children(metrics.SOCKET_CLOSES)
_login_failures = Children(metrics.LOGIN_FAILURES)
_rate_limited = Children(metrics.RATE_LIMITED)
_reconnects = Children(metrics.NATS_RECONNECTS)
_frames_in = metrics.SOCKET_FRAMES.labels("in")
_frames_out = metrics.SOCKET_FRAMES.labels("out")
_accepted = metrics.SOCKET_ADMISSIONS.labels("accepted")

executed = Children(metrics.INTENTS_EXECUTED)
execution_seconds = Children(metrics.INTENT_EXECUTION_SECONDS)
agent_runs = Children(metrics.AGENT_RUNS)
agent_events = Children(metrics.AGENT_EVENTS)


def intent_sent(intent: str, code: str, seconds: float | None) -> None:
    """An intent the Experience Plane sent and how it ended (``seconds``: its round trip, when
    it has one: queued agent work is answered later, on the socket)."""
    _sent(intent, code).inc()
    if seconds is not None:
        _round_trip(intent).observe(seconds)


def kv_call(bucket: str, op: str, seconds: float) -> None:
    """One JetStream KV call of the runtime."""
    _kv(bucket, op).observe(seconds)


def socket_refused(code: int) -> None:
    """A socket accepted only to be closed at once with ``code``."""
    _admissions(str(code)).inc()


def socket_opened() -> None:
    """A socket admitted."""
    _accepted.inc()
    metrics.SOCKETS_OPEN.inc()


def socket_closed(code: int | None) -> None:
    """An admitted socket closed with ``code`` (1000 when the client left first)."""
    metrics.SOCKETS_OPEN.dec()
    _closes(str(code or 1000)).inc()


def frame_in() -> None:
    """A frame from a client."""
    _frames_in.inc()


def frame_out() -> None:
    """A frame to a client."""
    _frames_out.inc()


def sockets_max() -> None:
    """Publish this process's socket ceiling: its open-file limit, as each socket holds one
    descriptor (there is no separate socket setting to hit first)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        metrics.SOCKETS_MAX.set(soft)


def login_failed(code: str) -> None:
    """A login that did not succeed, by error code."""
    _login_failures(code).inc()


def rate_limited(scope: str) -> None:
    """A request the per-address limiter refused."""
    _rate_limited(scope).inc()


def reconnected(component: str) -> None:
    """A NATS connection of ``component`` came back."""
    _reconnects(component).inc()
