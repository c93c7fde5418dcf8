"""The process's log: one handler on stderr whose lines no logged value can forge or colour.

Log messages carry values from strangers (a login body's keys, a path, a header). A newline in
one would start a line that looks like ours, an ESC would drive the reader's terminal: every
control character of a record is escaped (``\\n``, ``\\x1b``), and a traceback's lines are
indented, so each record starts exactly one unindented line. Libraries that bring their own
handler (FastStream writes coloured lines, some to stdout) are routed through the same one.

``SYMPHAINY_LOG_FORMAT=json`` makes each record one JSON object on one line instead (``time``,
``level``, ``logger``, ``message``, ``correlation_id``, ``trace_id``, ``span_id``, and
``exception`` when there is one), for a log collector; the same controls are escaped in it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry import trace

from telemetry import context

LogFormat = Literal["text", "json"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that bring their own handler (with colour codes) and do not propagate.
ADOPTED = ("faststream",)

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, bidi overrides.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` with every control character written as an escape: one line, no terminal codes."""
    return _CONTROL.sub(_escape_char, text)


class EscapingFormatter(logging.Formatter):
    """A formatter whose records are one line each, whatever their values hold.

    The record's line is escaped as a whole (message, logger name, level); an exception or stack
    follows on indented lines, each escaped, so nothing in it can pass for a record of its own.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The escaped line, then any traceback, indented."""
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = escape(self.formatMessage(record))
        blocks = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            blocks.append(record.exc_text)
        if record.stack_info:
            blocks.append(self.formatStack(record.stack_info))
        for block in blocks:
            for part in block.splitlines():
                line += "\n  " + escape(part)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, whatever its values hold.

    ``json`` already escapes the C0 controls; DEL, the C1 controls and the Unicode separators and
    bidi overrides (which a terminal or an editor would act on) are escaped as ``\\uXXXX`` too.
    Other text stays as it is (UTF-8). ``correlation_id`` is the record's (``extra=``) if set;
    ``trace_id`` and ``span_id`` are those of the span current when the record was made.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": _correlation_id(record),
            "trace_id": None,
            "span_id": None,
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = trace.format_trace_id(context.trace_id)
            entry["span_id"] = trace.format_span_id(context.span_id)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _CONTROL.sub(_json_escape, json.dumps(entry, ensure_ascii=False, default=str))


def _correlation_id(record: logging.LogRecord) -> str | None:
    # The record's own (``extra=``), else that of the request or intent being handled.
    value = getattr(record, "correlation_id", None) or context.correlation_id.get()
    return None if value is None else str(value)


def _json_escape(match: re.Match[str]) -> str:
    # Only characters json.dumps left as they are reach here, and JSON has them only in strings.
    return f"\\u{ord(match.group()):04x}"


def formatter(log_format: LogFormat) -> logging.Formatter:
    """The formatter of one log format."""
    return JsonFormatter() if log_format == "json" else EscapingFormatter(FORMAT)


def configure(level: int | str, log_format: LogFormat = "text") -> logging.Handler:
    """Log to stderr through one escaping handler, at ``level``, as ``log_format``; the
    handler (idempotent: a second call changes the level and format of the same handler)."""
    root = logging.getLogger()
    for existing in root.handlers:
        if isinstance(existing.formatter, EscapingFormatter | JsonFormatter):
            existing.setFormatter(formatter(log_format))
            root.setLevel(level)
            return existing
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root.addHandler(handler)
    root.setLevel(level)
    adopt_library_loggers()
    return handler


def adopt_library_loggers() -> None:
    """Send FastStream's loggers through the root handler: no colour codes, nothing on stdout.

    FastStream gives each logger it makes a handler of its own (``ColourizedFormatter`` with
    colours forced on, the broker's on stdout) and stops propagation. Its broker makes its
    logger when it starts, so call this again once the workers have started.
    """
    loggers = logging.Logger.manager.loggerDict
    for name in list(loggers):
        if not any(name == n or name.startswith(f"{n}.") for n in ADOPTED):
            continue
        logger = loggers[name]
        if not isinstance(logger, logging.Logger):
            continue
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
