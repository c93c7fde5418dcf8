"""Runtime workers as child processes of ``symphainy up``: each one a ``symphainy runtime``.

Workers in ``up``'s own process shared one interpreter (one core) with the Experience Plane, so
``--workers 2`` added no CPU; as processes they use the machine's cores, as separate machines
would. ``up`` starts them, waits until each says it is answering, restarts one that dies
(backing off when it keeps dying), and stops them after the Experience Plane has drained.

Children run in their own process group, so a Ctrl-C in the terminal reaches only ``up``, which
then stops things in order; on Linux a child also gets SIGTERM if ``up`` itself dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable

from bus.settings import Settings
from symphainy import logs

log = logging.getLogger(__name__)

# What ``symphainy runtime`` prints once its workers answer on the bus, and before that, with
# ``--metrics-port``, where it serves its metrics.
READY_MARK = "runtime worker(s) on "
METRICS_MARK = "metrics: "
# A worker that dies sooner than this after its start is restarted with a growing delay.
STEADY_S = 10.0
MAX_BACKOFF_S = 30.0


class WorkerStartError(Exception):
    """A worker process did not come up; the message says how it ended."""


def worker_argv(settings: Settings) -> list[str]:
    """The command line of one worker process: ``up``'s bus settings, one worker."""
    argv = [sys.executable, "-m", "symphainy", "runtime", "--workers", "1"]
    argv += ["--data-dir", str(settings.data_dir)]
    if settings.metrics_port is not None:
        argv += ["--metrics-port", "0"]  # any free port; up merges it into its own /metrics
    if settings.nats_url is not None:
        argv += ["--nats-url", settings.nats_url]
    if settings.nats_context is not None:
        argv += ["--nats-context", str(settings.nats_context)]
    return argv


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


class WorkerProcess:
    """One supervised worker process."""

    def __init__(self, index: int, argv: list[str], start_timeout: float) -> None:
        self.index = index
        self._argv = argv
        self._start_timeout = start_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.metrics_url: str | None = None
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The current process id (it changes when the worker is restarted)."""
        return self.proc.pid if self.proc is not None else None

    async def start(self) -> None:
        """Start the process and return once it answers intents; then keep it running."""
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise())

    async def _spawn(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self._argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            await asyncio.wait_for(self._ready(self.proc), self._start_timeout)
        except TimeoutError:
            await self._terminate(self.proc, 0)
            raise WorkerStartError(
                f"runtime worker {self.index} did not answer within {self._start_timeout:g} s"
            ) from None
        except WorkerStartError:
            await self._terminate(self.proc, 0)
            raise
        self._drain = asyncio.create_task(_forward(self.proc))

    async def _ready(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            text = line.decode(errors="replace")
            if text.startswith(METRICS_MARK):
                self.metrics_url = text[len(METRICS_MARK) :].strip()
                continue
            if READY_MARK in text:
                log.info("runtime worker %d answering (pid %d)", self.index, proc.pid)
                return
            sys.stdout.write(logs.escape(text.rstrip("\n")) + "\n")
        code = await proc.wait()
        raise WorkerStartError(f"runtime worker {self.index} exited with {code} while starting")

    async def _supervise(self) -> None:
        backoff = 1.0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            assert self.proc is not None
            code = await self.proc.wait()
            if self._stopping:
                return
            lived = loop.time() - started
            backoff = 1.0 if lived >= STEADY_S else min(backoff * 2, MAX_BACKOFF_S)
            log.warning(
                "runtime worker %d (pid %d) exited with %d; restarting in %.0f s",
                self.index,
                self.proc.pid,
                code,
                backoff,
            )
            await asyncio.sleep(backoff)
            if self._stopping:
                return
            try:
                await self._spawn()
            except (WorkerStartError, OSError) as exc:
                log.warning("%s", exc)

    async def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; no restart after this."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        if self.proc is not None:
            await self._terminate(self.proc, timeout)
        if self._drain is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._drain, 1.0)

    @staticmethod
    async def _terminate(proc: asyncio.subprocess.Process, timeout: float) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


async def _forward(proc: asyncio.subprocess.Process) -> None:
    """Pass on whatever else the worker prints, so its pipe never fills."""
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        sys.stdout.write(logs.escape(line.decode(errors="replace").rstrip("\n")) + "\n")
        sys.stdout.flush()


class WorkerProcesses:
    """``settings.workers`` supervised worker processes."""

    def __init__(
        self, settings: Settings, argv: Callable[[Settings], list[str]] = worker_argv
    ) -> None:
        timeout = max(30.0, settings.request_timeout_s * 3)
        self.workers = [
            WorkerProcess(i + 1, argv(settings), timeout) for i in range(settings.workers)
        ]

    async def start(self) -> None:
        """Start every worker at once; fails (stopping the others) if one does not come up."""
        results = await asyncio.gather(
            *(worker.start() for worker in self.workers), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.stop(0)
            raise failed[0]

    def metrics_urls(self) -> dict[str, str]:
        """Where each worker serves its metrics, by worker number (with ``--metrics-port``)."""
        return {str(w.index): w.metrics_url for w in self.workers if w.metrics_url is not None}

    async def stop(self, timeout: float) -> None:
        """Stop every worker (each finishes or hands back what it holds within ``timeout``)."""
        await asyncio.gather(*(worker.stop(timeout) for worker in self.workers))
