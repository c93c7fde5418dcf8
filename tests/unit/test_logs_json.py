"""``SYMPHAINY_LOG_FORMAT=json``: one JSON object per record, one line, nothing forged."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import datetime

import pytest
from faststream._internal.logger.logging import get_logger
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from bus.settings import Settings
from symphainy import logs

FORGED = 'x\n{"level": "INFO", "message": "forged"}\x1b[31m\r\u2028\u202e\x7f\x9b'
KEYS = {"time", "level", "logger", "message", "correlation_id", "trace_id", "span_id"}


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("experience.app", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_record_is_one_json_object_with_every_key() -> None:
    made = record("hello %s", "world")
    line = logs.JsonFormatter().format(made)
    entry = json.loads(line)
    assert set(entry) == KEYS
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "experience.app"
    assert entry["message"] == "hello world"
    assert entry["correlation_id"] is None
    assert entry["trace_id"] is None
    assert entry["span_id"] is None
    when = datetime.fromisoformat(entry["time"])
    assert when.utcoffset() is not None
    assert when.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs(when.timestamp() - made.created) < 0.001


def test_the_correlation_id_comes_from_the_record() -> None:
    entry = json.loads(logs.JsonFormatter().format(record(correlation_id="req-42")))
    assert entry["correlation_id"] == "req-42"


def test_trace_and_span_ids_come_from_the_current_span() -> None:
    context = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    with trace.use_span(NonRecordingSpan(context)):
        entry = json.loads(logs.JsonFormatter().format(record()))
    assert entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert entry["span_id"] == "00f067aa0ba902b7"


def test_hostile_values_stay_on_one_line_without_terminal_codes() -> None:
    line = logs.JsonFormatter().format(record("rejected: %s", FORGED))
    assert "\n" not in line
    assert "\r" not in line
    for char in "\x1b\u2028\u202e\x7f\x9b":
        assert char not in line
    assert json.loads(line)["message"] == f"rejected: {FORGED}"
    # Text that is not a control stays readable.
    assert "ünïcödé" in logs.JsonFormatter().format(record("ünïcödé"))


def test_an_exception_is_a_field_of_the_same_line() -> None:
    try:
        raise ValueError(FORGED)
    except ValueError:
        failure = sys.exc_info()
        made = logging.LogRecord("symphainy", logging.ERROR, __file__, 1, "boom", (), failure)
    line = logs.JsonFormatter().format(made)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "boom"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError" in entry["exception"]


def test_log_format_is_a_setting() -> None:
    assert Settings(_env_file=None).log_format == "text"  # type: ignore[call-arg]
    assert Settings(log_format="json", _env_file=None).log_format == "json"  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="log_format"):
        Settings(log_format="xml", _env_file=None)  # type: ignore[call-arg,arg-type]


@pytest.fixture
def json_root_log() -> Iterator[io.StringIO]:
    """The root logger writing JSON through ``logs.configure``'s handler into a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        handler = logs.configure(logging.INFO, "json")
        assert isinstance(handler, logging.StreamHandler)
        assert logs.configure(logging.INFO, "json") is handler
        buffer = io.StringIO()
        handler.setStream(buffer)
        yield buffer
    finally:
        for added in root.handlers[:]:
            if added not in saved[0]:
                root.removeHandler(added)
        root.setLevel(saved[1])


def test_uvicorn_and_faststream_records_are_json_lines(json_root_log: io.StringIO) -> None:
    broker_log = get_logger("faststream.access.jsontest", logging.INFO, sys.stdout, "%(message)s")
    logs.adopt_library_loggers()
    broker_log.info("callback for %s is being executed...", "Task-1")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request: %s", FORGED)
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "a", "GET", "/", "1.1", 200)
    lines = json_root_log.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["logger"] for e in entries] == [
        "faststream.access.jsontest",
        "uvicorn.error",
        "uvicorn.access",
    ]
    assert all(set(e) == KEYS for e in entries)
    assert entries[0]["message"] == "callback for Task-1 is being executed..."
    assert "\x1b" not in json_root_log.getvalue()


def test_configure_again_switches_the_same_handler_to_text(json_root_log: io.StringIO) -> None:
    handler = logs.configure(logging.INFO, "text")
    assert isinstance(handler.formatter, logs.EscapingFormatter)
    assert sum(1 for h in logging.getLogger().handlers if h is handler) == 1


def test_the_correlation_id_of_the_work_in_hand_when_the_record_has_none() -> None:
    from telemetry import context

    token = context.correlation_id.set("intent-7")
    try:
        entry = json.loads(logs.JsonFormatter().format(record()))
    finally:
        context.correlation_id.reset(token)
    assert entry["correlation_id"] == "intent-7"
    assert json.loads(logs.JsonFormatter().format(record()))["correlation_id"] is None
