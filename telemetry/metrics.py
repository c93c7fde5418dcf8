"""Every Prometheus metric the system exports, declared in one place.

Names follow Prometheus conventions: the ``symphainy_`` prefix, ``_total`` for counters,
``_seconds`` for durations. The intent type is a label (its class name, e.g. ``VerifySession``);
outcomes are ``ok`` or the wire error code (``session_revoked``, ``runtime_unavailable``...).
The alerting rules in ``ops/prometheus/`` and the dashboard in ``ops/grafana/`` use these names;
a test checks that every ``symphainy_`` name they use is declared here.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# Latency buckets from 100 µs (a KV get on loopback is ~250 µs) to 10 s (a request deadline).
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip

registry: CollectorRegistry = REGISTRY

# -- runtime worker --------------------------------------------------------------------------

INTENTS_EXECUTED = Counter(
    "symphainy_runtime_intents_executed_total",
    "Intents a runtime worker executed, by intent type and outcome code.",
    ["intent", "code"],
)
INTENT_EXECUTION_SECONDS = Histogram(
    "symphainy_runtime_intent_duration_seconds",
    "Time a runtime worker spent on an intent, from receipt to reply sent.",
    ["intent"],
    buckets=LATENCY_BUCKETS,
)
KV_SECONDS = Histogram(
    "symphainy_runtime_kv_duration_seconds",
    "JetStream KV call latency seen by the runtime, by bucket and operation.",
    ["bucket", "op"],
    buckets=LATENCY_BUCKETS,
)
AGENT_RUNS = Counter(
    "symphainy_runtime_agent_runs_total",
    "Agent runs finished by a runtime worker, by agent and outcome code.",
    ["agent", "code"],
)
AGENT_EVENTS = Counter(
    "symphainy_runtime_agent_events_total",
    "Events agents emitted, by agent.",
    ["agent"],
)
AUDIT_STREAM_BYTES = Gauge(
    "symphainy_runtime_audit_stream_bytes",
    "Bytes held by the INTENTS audit stream, as last read by a runtime worker.",
)
AUDIT_STREAM_MAX_BYTES = Gauge(
    "symphainy_runtime_audit_stream_max_bytes",
    "The INTENTS audit stream's byte cap.",
)

# -- Experience Plane ------------------------------------------------------------------------

INTENTS_SENT = Counter(
    "symphainy_experience_intents_sent_total",
    "Intents the Experience Plane sent, by intent type and outcome code.",
    ["intent", "code"],
)
INTENT_ROUND_TRIP_SECONDS = Histogram(
    "symphainy_experience_intent_duration_seconds",
    "Intent round trip seen by the Experience Plane, request to typed reply.",
    ["intent"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "symphainy_experience_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "symphainy_experience_http_request_duration_seconds",
    "HTTP request latency, by route template and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
SOCKETS_OPEN = Gauge(
    "symphainy_experience_sockets_open",
    "Admitted WebSockets currently open.",
)
SOCKETS_MAX = Gauge(
    "symphainy_experience_sockets_max",
    "The most sockets this process can hold: its open-file limit (each socket holds one).",
)
SOCKET_ADMISSIONS = Counter(
    "symphainy_experience_socket_admissions_total",
    "WebSocket admission decisions: code 'accepted', or the close code a refusal sent.",
    ["code"],
)
SOCKET_CLOSES = Counter(
    "symphainy_experience_socket_closes_total",
    "Admitted WebSockets closed, by close code.",
    ["code"],
)
SOCKET_FRAMES = Counter(
    "symphainy_experience_socket_frames_total",
    "WebSocket frames, by direction ('in' from clients, 'out' to them).",
    ["direction"],
)
LOGIN_FAILURES = Counter(
    "symphainy_experience_login_failures_total",
    "Failed logins, by error code (invalid_credentials, rate_limited...).",
    ["code"],
)
RATE_LIMITED = Counter(
    "symphainy_experience_rate_limited_total",
    "Requests refused by the Experience Plane's per-address limiter, by scope.",
    ["scope"],
)

# -- both ------------------------------------------------------------------------------------

NATS_RECONNECTS = Counter(
    "symphainy_nats_reconnects_total",
    "Reconnections to NATS, by component (experience, runtime).",
    ["component"],
)
