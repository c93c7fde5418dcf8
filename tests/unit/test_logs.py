"""No token reaches a log line through a query string."""

from __future__ import annotations

import logging

from experience.logs import ScrubQueryStrings, scrub


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
