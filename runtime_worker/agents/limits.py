"""What one agent run may send: so many events, so many bytes of events and result.

Without a bound, one 58 KB ``echo`` frame made a worker send 29,000 events. The first event past
a limit is not sent: ``emit`` raises ``RunLimitExceeded`` into the agent, and the run ends with
that error whatever the agent does next.
"""

from __future__ import annotations

from intents import AgentResult, RunAgent, RunLimitExceeded
from runtime_worker.agents.execute import failed


class RunBudget:
    """The events and bytes one run has left."""

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self._max_events = max_events
        self._max_bytes = max_bytes
        self.events = 0
        self.bytes = 0
        self.exceeded: RunLimitExceeded | None = None

    def spend(self, size: int) -> None:
        """Account for one event of ``size`` bytes, or raise if it would break a limit."""
        if self.exceeded is None:
            if self.events + 1 > self._max_events:
                self.exceeded = RunLimitExceeded(f"more than {self._max_events} events")
            elif self.bytes + size > self._max_bytes:
                self.exceeded = RunLimitExceeded(f"more than {self._max_bytes} bytes")
        if self.exceeded is not None:
            raise self.exceeded
        self.events += 1
        self.bytes += size

    def settle(self, intent: RunAgent, result: AgentResult, size: int) -> AgentResult:
        """The result to send: ``result`` (``size`` bytes) if the run kept within its limits."""
        if self.exceeded is None and self.bytes + size > self._max_bytes:
            self.exceeded = RunLimitExceeded(f"more than {self._max_bytes} bytes")
        return result if self.exceeded is None else failed(intent, self.exceeded)
