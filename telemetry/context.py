"""The correlation id of what this task is working on, for every log line it writes.

Set where work starts (an HTTP request in the Experience Plane, an intent in the runtime);
asyncio copies it into the tasks started from there. ``symphainy.logs`` puts it on each line.
"""

from __future__ import annotations

from contextvars import ContextVar

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
