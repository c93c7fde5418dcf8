"""Running the system: everything on one machine (``up``), or one component.

``up`` takes its HTTP port and checks the embedded NATS's before it writes anything, then checks
the signing keys before it starts NATS or creates a user: a start that cannot succeed fails at
once, in one line, and leaves no half-made system (no admin whose password went unseen).

Signals are ours, not uvicorn's: the first Ctrl-C (or SIGTERM) stops the Experience Plane
(sockets get 1001), then the workers, then the embedded NATS; a second one forces the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from bus.connection import PermissionDenied
from bus.embedded import EmbeddedNats, EmbeddedNatsError
from bus.identity import IdentityError, identity_for
from bus.permissions import Role
from bus.provision import ensure_secrets, write_contexts, write_server_config
from bus.settings import Settings
from experience import keys
from experience.app import create_app
from experience.server import ExperienceServer, build_server
from intents import SymphainyError
from runtime_worker.app import GRACEFUL_TIMEOUT_S, Worker, start_worker
from symphainy import first_run, logs
from symphainy.workers import WorkerProcesses, WorkerStartError
from telemetry import exposition, tracing

log = logging.getLogger(__name__)


# The embedded NATS listens on loopback only.
NATS_HOST = "127.0.0.1"


class StartupError(Exception):
    """Something the user can fix prevented the start; the message says what."""


def main(coro: Coroutine[Any, Any, None]) -> int:
    """Run a component until it is stopped; the exit code."""
    try:
        asyncio.run(coro)
    except (StartupError, PermissionDenied, IdentityError, tracing.TracingConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _stop_signal() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _listen(host: str, port: int) -> socket.socket:
    # Bound here, not by uvicorn, so a taken port is our clear error rather than uvicorn's exit.
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections of a socket that names
    # it, and without it every response written in two pieces waited ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot serve HTTP on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _check_port_free(host: str, port: int) -> None:
    # The embedded NATS binds its own port, later; a probe now fails the start before anything
    # exists. Bound as nats-server binds (SO_REUSEADDR), so a port it could take passes.
    if port <= 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupError(
                f"port {host}:{port} is already in use; stop whatever holds it or "
                "pass another --nats-port"
            ) from exc


def _metrics(
    settings: Settings, children: exposition.ChildSources | None = None
) -> Callable[[], None]:
    """Serve this process's metrics (and ``children``'s) if ``metrics_port`` is set; what stops
    them."""
    if settings.metrics_port is None:
        return lambda: None
    try:
        server = exposition.serve(settings.metrics_host, settings.metrics_port, children=children)
    except OSError as exc:
        raise StartupError(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: "
            f"{exc.strerror}"
        ) from exc
    print(f"metrics: {server.url}", flush=True)
    return server.stop


def _signing_keys(settings: Settings) -> Settings:
    """``settings`` with their signing keys, checked (weak ones refused outside dev mode)."""
    try:
        return keys.resolve(settings)
    except keys.KeyRejected as exc:
        raise StartupError(str(exc)) from exc


async def _serve(
    settings: Settings, stop: asyncio.Event, announce: str, sock: socket.socket | None = None
) -> None:
    sock = sock or _listen(settings.host, settings.port)
    server = build_server(
        create_app(settings), settings, settings.host, settings.port, handle_signals=False
    )
    serving = asyncio.create_task(_run_server(server, sock))
    stopping = asyncio.create_task(stop.wait())
    try:
        await _started(server, serving)
        print(f"{announce}: http://{settings.host}:{server.bound_port}", flush=True)
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        stop.clear()
        forced = asyncio.create_task(_force_on_second_signal(server, stop))
        await serving
        forced.cancel()
    finally:
        stopping.cancel()
        sock.close()


async def _run_server(server: ExperienceServer, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:
        # uvicorn exits (code 3) when the lifespan fails, e.g. NATS refused our identity; a
        # SystemExit in a task would end the event loop before anything is cleaned up.
        raise StartupError("the Experience Plane did not start (see the log above)") from exc


async def _started(server: ExperienceServer, serving: asyncio.Task[None]) -> None:
    while not server.started:
        if serving.done():
            serving.result()
            raise StartupError("the Experience Plane did not start (see the log above)")
        await asyncio.sleep(0.02)


async def _force_on_second_signal(server: ExperienceServer, stop: asyncio.Event) -> None:
    await stop.wait()
    server.force_exit = True


async def _start_workers(settings: Settings) -> list[Worker]:
    workers: list[Worker] = []
    try:
        for _ in range(settings.workers):
            workers.append(await start_worker(settings))
    except BaseException:
        await _stop_workers(workers)
        raise
    return workers


async def _stop_workers(workers: list[Worker]) -> None:
    for worker in reversed(workers):
        with contextlib.suppress(Exception):
            await worker.stop()


async def up(settings: Settings, *, embedded: bool) -> None:
    """The whole system: embedded NATS (unless given a URL), worker processes, the Experience
    Plane."""
    tracing.setup(tracing.Part.EXPERIENCE)  # the worker processes set up their own
    stop = _stop_signal()
    sock = _listen(settings.host, settings.port)
    nats: EmbeddedNats | None = None
    stop_metrics: Callable[[], None] = lambda: None  # noqa: E731
    workers: WorkerProcesses | None = None
    try:
        # With --metrics-port, each worker process serves its own on a free port and this
        # /metrics merges them in (labelled worker="N").
        stop_metrics = _metrics(settings, lambda: workers.metrics_urls() if workers else {})
        if embedded:
            _check_port_free(NATS_HOST, settings.nats_port)
        # The keys, the admin password and (embedded) JetStream's files: the owner's alone.
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if embedded:
            settings.data_dir.chmod(0o700)
        settings = _signing_keys(settings)
        if embedded:
            nats = await _embedded_nats(settings)
            settings = settings.model_copy(update={"nats_url": nats.url})
        workers = WorkerProcesses(settings)
        try:
            await workers.start()
        except WorkerStartError as exc:
            raise StartupError(str(exc)) from exc
        logs.adopt_library_loggers()
        try:
            try:
                admin_line = await first_run.ensure_admin(settings)
            except SymphainyError as exc:
                raise StartupError(f"could not check for users: {exc.message}") from exc
            if admin_line is not None:
                print(admin_line, flush=True)
            await _serve(settings, stop, f"symphainy is up (NATS {settings.nats_url})", sock)
        finally:
            await workers.stop(GRACEFUL_TIMEOUT_S + 2)
    finally:
        sock.close()
        stop_metrics()
        if nats is not None:
            nats.stop()
    log.info("symphainy stopped")


async def _embedded_nats(settings: Settings) -> EmbeddedNats:
    """Start the embedded NATS with authorization on: role secrets made on the first start,
    reused after; each role's context (re)written with the URL the server bound."""
    bus = ensure_secrets(settings.data_dir)
    config = write_server_config(bus)
    nats = EmbeddedNats(
        settings.data_dir / "nats", port=settings.nats_port, host=NATS_HOST, config=config
    )
    try:
        await asyncio.to_thread(nats.start)
    except EmbeddedNatsError as exc:
        raise StartupError(str(exc)) from exc
    write_contexts(bus, settings.data_dir, nats.url)
    return nats


async def runtime(settings: Settings) -> None:
    """Runtime worker(s) until stopped."""
    tracing.setup(tracing.Part.RUNTIME)
    stop = _stop_signal()
    workers = await _start_workers(settings)
    logs.adopt_library_loggers()
    url = identity_for(settings, Role.RUNTIME).url
    try:
        stop_metrics = _metrics(settings)
    except BaseException:
        await _stop_workers(workers)
        raise
    print(f"{len(workers)} runtime worker(s) on {url}", flush=True)
    try:
        await stop.wait()
    finally:
        stop_metrics()
        await _stop_within(workers, settings.agent_drain_timeout_s + 2 * GRACEFUL_TIMEOUT_S + 5)


async def _stop_within(workers: list[Worker], seconds: float) -> None:
    """Stop the workers, or leave anyway after ``seconds``.

    A worker stopped while its NATS is going away can wait on the connection for ever; an
    orphaned worker of a SIGKILLed ``up`` did. Workers hold nothing that is not on the bus
    (unacknowledged work is delivered again), so past the deadline the process just exits.
    """
    try:
        await asyncio.wait_for(_stop_workers(workers), seconds)
    except TimeoutError:
        log.error("runtime workers did not stop within %.0f s; exiting anyway", seconds)
        logging.shutdown()
        os._exit(1)


async def experience(settings: Settings) -> None:
    """The Experience Plane until stopped."""
    tracing.setup(tracing.Part.EXPERIENCE)
    stop = _stop_signal()
    settings = _signing_keys(settings)
    url = identity_for(settings, Role.EXPERIENCE).url
    stop_metrics = _metrics(settings)
    try:
        await _serve(settings, stop, f"experience plane up (NATS {url})")
    finally:
        stop_metrics()
