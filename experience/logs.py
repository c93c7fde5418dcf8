"""Logging for the Experience Plane: no secret reaches a log line.

uvicorn logs request paths with their query strings, and a WebSocket client may put its token
there (``?session_token=...``). This filter drops every query string from uvicorn's records.
"""

from __future__ import annotations

import logging
import re

_QUERY = re.compile(r"(/[^\s?\"]*)\?[^\s\"]*")


def scrub(text: str) -> str:
    """``text`` with the query string of any path removed."""
    return _QUERY.sub(r"\1?[redacted]", text)


class ScrubQueryStrings(logging.Filter):
    """Rewrite a record's arguments so paths lose their query strings."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(scrub(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "?" in record.msg:
            record.msg = scrub(record.msg)
        return True


def install() -> None:
    """Attach the filter to uvicorn's loggers (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubQueryStrings) for f in logger.filters):
            logger.addFilter(ScrubQueryStrings())
