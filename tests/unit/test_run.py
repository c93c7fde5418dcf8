"""Pure parts of ``symphainy.run``."""

from __future__ import annotations

import asyncio

import pytest

from symphainy import run


class StuckWorker:
    """A worker whose stop never returns (its connection waits on a NATS that is gone)."""

    async def stop(self) -> None:
        await asyncio.Event().wait()


class Exited(Exception):
    pass


async def test_workers_that_do_not_stop_in_time_end_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codes: list[int] = []

    def exit_now(code: int) -> None:
        codes.append(code)
        raise Exited

    monkeypatch.setattr(run.os, "_exit", exit_now)
    monkeypatch.setattr(run.logging, "shutdown", lambda: None)  # pytest's handlers stay open
    with pytest.raises(Exited):
        await run._stop_within([StuckWorker()], 0.05)  # type: ignore[list-item]
    assert codes == [1]
