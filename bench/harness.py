"""What every benchmark shares: real processes started as users start them, the bus they meet on,
and the arithmetic of a result.

- ``Process``: a command (``.venv/bin/symphainy up``, a floor from ``floors.py``) in its own
  process group, its output in a log file, ready when a line of that log matches; stopped with
  SIGTERM as a user would, killed if it lingers. ``cpu_seconds`` reads its CPU from ``/proc``.
- ``secured_nats``: an embedded nats-server with authorization on, as ``symphainy up`` runs it,
  plus ``bench``, a user with every permission that only the benchmarks' server knows (setup
  and the raw floors); the role contexts are written into the data directory, so
  ``symphainy runtime --data-dir`` finds its identity there.
- ``rate``, ``median``, ``result``: calls per second with N in flight, and the ``RESULT`` line
  every row script prints last (bench/README.md).

``running_system`` and ``timed`` start a worker inside the benchmark's own process; only the
older scripts (list_sessions, login_timing) still use them.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from nats.aio.client import Client

from bus.connection import connect
from bus.embedded import EmbeddedNats
from bus.identity import NatsIdentity, write_private
from bus.permissions import Role
from bus.provision import ensure_secrets, role_identity, write_contexts, write_server_config
from bus.settings import Settings
from experience.app import create_app
from experience.server import build_server
from intents import CreateSession, CreateSessionReply, Intent, VerifySession, new_id
from intents.request import ask, intent_headers
from runtime_worker.app import start_worker

BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SYMPHAINY = str(BIN / "symphainy")
FLOORS = [sys.executable, str(BENCH / "floors.py")]
# What ``symphainy runtime`` and ``symphainy up`` print once they serve.
RUNTIME_READY = re.compile(r"(\d+) runtime worker\(s\) on (\S+)")
UP_READY = re.compile(r"symphainy is up \(NATS (\S+)\): (http://\S+)")
FLOOR_READY = re.compile(r"floor ready(?: on (\S+))?")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on loopback that nobody held a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ``SYMPHAINY_*`` of the caller's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYMPHAINY_")}
    return env | extra


def _own_group_dying_with_parent() -> None:
    # Its own process group (stopped as one), and SIGTERM when the benchmark dies, however.
    os.setsid()
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Process:
    """One command in its own process group, ready once its log matches ``ready``."""

    def __init__(
        self, name: str, argv: Sequence[str], ready: re.Pattern[str], workdir: Path, **env: str
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready = ready
        self.log_path = workdir / f"{name}.log"
        # A run directory of its own: a developer's .env in the repository must not leak in.
        self.workdir = workdir
        self.env = clean_env(**env)
        self.match: re.Match[str] | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (of the command itself, not of anything it starts)."""
        assert self._popen is not None, f"{self.name} not started"
        return self._popen.pid

    def start(self) -> Process:
        """Start the command and wait until its log says it is ready (or it exits: an error)."""
        self._log = self.log_path.open("wb")
        self._popen = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            env=self.env,
            preexec_fn=_own_group_dying_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        # The log is a file, not a pipe, so nothing in this process has to keep draining it
        # while it measures; readiness is watched by re-reading it.
        while (found := self.ready.search(self.log_path.read_text(errors="replace"))) is None:
            if self._popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.tail()}")
            time.sleep(0.01)
        self.match = found
        return self

    def found(self, group: int) -> str:
        """A group of the readiness line (a URL it announced, say)."""
        assert self.match is not None, f"{self.name} not started"
        return self.match.group(group)

    def tail(self, lines: int = 30) -> str:
        """The last lines of the log."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (as Ctrl-C would), then SIGKILL to its group if it has not exited in time."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self._popen.pid, signal.SIGKILL)
                self._popen.wait()
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> Process:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process (all of its threads) so far, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (man 5 proc).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children...)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


def command_name(pid: int) -> str:
    """The kernel's short name of a process (``nats-server``, ``python3.11``...)."""
    return Path(f"/proc/{pid}/comm").read_text().strip()


def python_tree_cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` and its descendants, the embedded nats-server left out."""
    pids = [pid, *(p for p in descendants(pid) if command_name(p) != "nats-server")]
    return sum(cpu_seconds(p) for p in pids)


def secured_nats(data_dir: Path) -> tuple[EmbeddedNats, NatsIdentity, dict[Role, NatsIdentity]]:
    """Start an embedded nats-server with the role users and ``bench``; the role contexts are
    written into ``data_dir`` so workers started on it find their identity."""
    bus = ensure_secrets(data_dir)
    password = secrets.token_urlsafe(24)
    config = write_server_config(bus, [{"user": "bench", "password": password}])
    server = EmbeddedNats(data_dir / "nats", config=config).start()
    write_contexts(bus, data_dir, server.url)
    roles = {role: role_identity(bus, role, server.url) for role in Role}
    return server, NatsIdentity(server.url, "bench", password), roles


def write_context(identity: NatsIdentity, path: Path) -> Path:
    """``identity`` as a NATS context file (0600) a floor process connects with."""
    write_private(path, json.dumps(identity.to_context()))
    return path


def runtime(data_dir: Path, *extra: str) -> Process:
    """``symphainy runtime`` as an operator starts it on the data directory's bus."""
    argv = [SYMPHAINY, "runtime", "--data-dir", str(data_dir), *extra]
    return Process("runtime", argv, RUNTIME_READY, data_dir)


def floor(name: str, workdir: Path, *args: str) -> Process:
    """A floor process from ``floors.py``."""
    return Process(name, [*FLOORS, *args], FLOOR_READY, workdir)


async def rate(
    call: Callable[[int], Awaitable[object]], in_flight: int, seconds: float
) -> tuple[int, float]:
    """(calls completed, seconds taken) with ``in_flight`` loops calling back to back."""
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(i: int) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call(i)
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(in_flight)))
    return done, time.perf_counter() - began


# Far enough that no intent sent during a run reaches its deadline.
DEADLINE_S = 3600
Wire = tuple[bytes, dict[str, str]]


def encode(intent: Intent) -> Wire:
    """The bytes and headers an intent travels as (encoded once, sent many times)."""
    wire = intent.with_deadline(DEADLINE_S)
    return wire.to_wire(), intent_headers(wire)


async def verify_wires(nc: Client, count: int) -> list[Wire]:
    """``count`` live sessions (one user each), made as the Experience Plane makes them, and the
    ``VerifySession`` of each, encoded."""
    wires = []
    for i in range(count):
        user_id = new_id()
        made = await ask(nc, CreateSession(user_id=user_id, username=f"u{i}"), 10)
        assert isinstance(made, CreateSessionReply)
        wires.append(encode(VerifySession(session_id=made.session.session_id, user_id=user_id)))
    return wires


async def send(nc: Client, subject: str, wire: Wire, *, check: bool = True) -> bytes:
    """One request by plain ``nc.request``; with ``check`` its reply must be a success (a
    floor's reply is not one). The reply's bytes."""
    reply = await nc.request(subject, wire[0], timeout=30, headers=wire[1])
    if check and json.loads(reply.data).get("ok") is not True:
        raise RuntimeError(f"{subject} failed: {reply.data[:200]!r}")
    return bytes(reply.data)


def median(values: Sequence[float]) -> float:
    """The median (of a round's samples, or of the rounds' figures)."""
    return float(statistics.median(values))


def result(figure: str, value: float, op: str, goal: float) -> bool:
    """Print the ``RESULT`` line (bench/README.md) and return whether the goal is met."""
    met = value <= goal if op == "<=" else value >= goal
    print(f"RESULT {figure} ratio={value:.3g} goal={op}{goal:g} pass={str(met).lower()}")
    return met


async def timed(
    call: Callable[[], Awaitable[object]], n: int, *, warmup: int, scale: float
) -> list[float]:
    """Durations of ``n`` sequential calls after ``warmup`` untimed ones, in seconds times ``scale``
    (1e3 for milliseconds, 1e6 for microseconds)."""
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * scale)
    return samples


@dataclass
class System:
    """A running system for one in-process benchmark."""

    settings: Settings
    nc: Client
    base_url: str | None
    roles: dict[Role, NatsIdentity]


@asynccontextmanager
async def running_system(*, http: bool = False, **overrides: Any) -> AsyncIterator[System]:
    """Start the system in this process (with HTTP if asked) with settings ``overrides``."""
    with tempfile.TemporaryDirectory() as tmp:
        server, bench, roles = secured_nats(Path(tmp))
        try:
            settings = Settings(data_dir=Path(tmp), dev_mode=True, **overrides)
            worker = await start_worker(settings)
            nc = await connect(bench, "bench")
            web = build_server(create_app(settings), settings, "127.0.0.1", 0) if http else None
            serving = asyncio.create_task(web.serve()) if web else None
            try:
                base_url = None
                if web is not None:
                    while not web.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
                        await asyncio.sleep(0.01)
                    base_url = f"http://127.0.0.1:{web.bound_port}"
                yield System(settings, nc, base_url, roles)
            finally:
                if web is not None and serving is not None:
                    web.should_exit = True
                    await serving
                await nc.close()
                await worker.stop()
        finally:
            server.stop()
