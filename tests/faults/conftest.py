"""Fault tier: real processes killed under load; each test reports what users saw.

The measurements (requests, failures, the window of errors after the fault, lost sessions) are
printed as each test ends (visible with ``-s``) and again in the run's terminal summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.faults.load import Load


@dataclass(frozen=True)
class Measured:
    """What one fault cost the users."""

    fault: str
    requests: int
    failed: int
    failed_logins: int
    wrong: int
    window_s: float | None
    lost: int
    sessions: int
    note: str = ""

    def line(self) -> str:
        """One line for the report."""
        window = "no errors" if self.window_s is None else f"errors until +{self.window_s:.2f} s"
        return (
            f"{self.fault}: {self.requests} requests, {self.failed} failed (503; "
            f"{self.failed_logins} login, {self.failed - self.failed_logins} verify), "
            f"{self.wrong} wrong; {window} after the fault; lost sessions {self.lost} of "
            f"{self.sessions}" + (f"; {self.note}" if self.note else "")
        )


MEASURED: list[Measured] = []

Report = Callable[..., Measured]


def measure(fault: str, load: Load, fault_at: float, lost: int, note: str = "") -> Measured:
    """The numbers of one fault from the load's outcomes."""
    failed = [o for o in load.outcomes if o.failed]
    return Measured(
        fault=fault,
        requests=len(load.outcomes),
        failed=len(failed),
        failed_logins=sum(1 for o in failed if o.kind == "login"),
        wrong=sum(1 for o in load.outcomes if o.problem),
        window_s=max((o.ended - fault_at for o in failed), default=None),
        lost=lost,
        sessions=len(load.sessions),
        note=note,
    )


@pytest.fixture
def report() -> Report:
    """Record (and print) the measurements of a fault."""

    def _report(fault: str, load: Load, fault_at: float, lost: int, note: str = "") -> Measured:
        measured = measure(fault, load, fault_at, lost, note)
        MEASURED.append(measured)
        print(f"\nFAULT {measured.line()}")
        return measured

    return _report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every fault's numbers, in the run's log."""
    if MEASURED:
        terminalreporter.section("fault measurements")
        for measured in MEASURED:
            terminalreporter.write_line(measured.line())
