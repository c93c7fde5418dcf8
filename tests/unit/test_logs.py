"""No token reaches a log line through a query string; no value forges or colours a line."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest
from faststream._internal.logger.logging import get_logger

from experience.logs import ScrubQueryStrings, scrub
from symphainy import logs

FORGED = "x\n2026-01-01 00:00:00,000 INFO experience.app: admin logged in\x1b[31m\r\u2028"


def test_scrub_drops_query_strings() -> None:
    assert scrub("/api/runtime/agent?session_token=abc.def.ghi") == "/api/runtime/agent?[redacted]"
    assert scrub("no query here /api/sessions") == "no query here /api/sessions"


def test_filter_rewrites_uvicorn_style_records() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/api/runtime/agent?session_token=secret", "1.1", 101),
        None,
    )
    assert ScrubQueryStrings().filter(record)
    assert "secret" not in record.getMessage()
    assert "/api/runtime/agent" in record.getMessage()


def formatted(record: logging.LogRecord) -> str:
    return logs.EscapingFormatter(logs.FORMAT).format(record)


def test_escape_writes_every_control_character_as_an_escape() -> None:
    assert logs.escape("a\nb\rc\td\x1b[31m\x00\x7f\x9b\u2028\u202e") == (
        "a\\nb\\rc\\td\\x1b[31m\\x00\\x7f\\x9b\\u2028\\u202e"
    )
    assert logs.escape("plain: ünïcödé / \\ 'quotes'") == "plain: ünïcödé / \\ 'quotes'"


def test_a_record_with_a_forged_line_stays_one_line_without_escape_codes() -> None:
    record = logging.LogRecord(
        "experience.errors", logging.INFO, __file__, 1, "rejected 422: %s", (FORGED,), None
    )
    line = formatted(record)
    assert "\n" not in line
    assert "\x1b" not in line
    assert "\u2028" not in line
    assert line.endswith("rejected 422: x\\n2026-01-01 00:00:00,000 INFO experience.app: "
                         "admin logged in\\x1b[31m\\r\\u2028")  # fmt: skip


def test_a_traceback_follows_on_indented_lines_that_cannot_pass_for_records() -> None:
    try:
        raise ValueError(FORGED)
    except ValueError:
        record = logging.LogRecord(
            "symphainy", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    first, *rest = formatted(record).split("\n")
    assert first.endswith("ERROR symphainy: failed")
    assert rest[0] == "  Traceback (most recent call last):"
    assert all(line.startswith("  ") for line in rest)
    assert not any("\x1b" in line or "\r" in line for line in rest)


@pytest.fixture
def root_log() -> Iterator[io.StringIO]:
    """The root logger writing through ``logs.configure``'s handler into a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        handler = logs.configure(logging.INFO)
        assert isinstance(handler, logging.StreamHandler)
        buffer = io.StringIO()
        handler.setStream(buffer)
        yield buffer
    finally:
        for added in root.handlers[:]:
            if added not in saved[0]:
                root.removeHandler(added)
        root.setLevel(saved[1])


def test_faststream_loggers_go_through_the_root_handler_without_colours(
    root_log: io.StringIO,
) -> None:
    # As FastStream's broker makes its logger when it starts: colours forced on, on stdout.
    broker_log = get_logger("faststream.access.test", logging.INFO, sys.stdout, "%(message)s")
    assert not broker_log.propagate
    assert broker_log.handlers
    logs.adopt_library_loggers()
    broker_log.info("callback for %s is being executed...", "Task-1")
    assert broker_log.propagate
    assert not broker_log.handlers
    assert "INFO faststream.access.test: callback for Task-1 is being executed..." in (
        root_log.getvalue()
    )
    assert "\x1b" not in root_log.getvalue()


def test_uvicorn_records_reach_the_root_handler_escaped(root_log: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request: %s", FORGED)
    lines = root_log.getvalue().splitlines()
    assert len(lines) == 1
    assert "\x1b" not in lines[0]
