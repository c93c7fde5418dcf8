"""Running the system: everything on one machine (``up``), or one component.

Signals are ours, not uvicorn's: the first Ctrl-C (or SIGTERM) stops the Experience Plane
(sockets get 1001), then the workers, then the embedded NATS; a second one forces the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
import sys
from collections.abc import Coroutine
from typing import Any

from bus.connection import PermissionDenied, connect
from bus.embedded import EmbeddedNats, EmbeddedNatsError
from bus.identity import IdentityError, identity_for
from bus.permissions import Role
from bus.provision import ensure_secrets, write_contexts, write_server_config
from bus.request import ask
from bus.settings import Settings
from experience.app import create_app
from experience.server import ExperienceServer, build_server
from intents import CreateUser, CreateUserReply, ListUsers, ListUsersReply, SymphainyError
from runtime_worker.app import Worker, start_worker

log = logging.getLogger(__name__)

ADMIN = "admin"


class StartupError(Exception):
    """Something the user can fix prevented the start; the message says what."""


def main(coro: Coroutine[Any, Any, None]) -> int:
    """Run a component until it is stopped; the exit code."""
    try:
        asyncio.run(coro)
    except (StartupError, PermissionDenied, IdentityError) as exc:
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
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot serve HTTP on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def _serve(settings: Settings, stop: asyncio.Event, announce: str) -> None:
    sock = _listen(settings.host, settings.port)
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


async def ensure_admin(settings: Settings) -> str | None:
    """On a system with no users, create ``admin`` with a random password and return it."""
    nc = await connect(identity_for(settings, Role.ADMIN), "symphainy-up")
    try:
        users = await ask(nc, ListUsers(actor="symphainy-up"), settings.request_timeout_s)
        assert isinstance(users, ListUsersReply)
        if users.users:
            return None
        password = secrets.token_urlsafe(18)
        created = await ask(
            nc,
            CreateUser(username=ADMIN, password=password, actor="symphainy-up"),
            settings.request_timeout_s,
        )
        assert isinstance(created, CreateUserReply)
        return password
    finally:
        await nc.close()


async def up(settings: Settings, *, embedded: bool) -> None:
    """The whole system: embedded NATS (unless given a URL), workers, the Experience Plane."""
    stop = _stop_signal()
    nats: EmbeddedNats | None = None
    if embedded:
        nats = await _embedded_nats(settings)
        settings = settings.model_copy(update={"nats_url": nats.url})
    try:
        workers = await _start_workers(settings)
        try:
            try:
                password = await ensure_admin(settings)
            except SymphainyError as exc:
                raise StartupError(f"could not check for users: {exc.message}") from exc
            if password is not None:
                print(
                    f"created user {ADMIN} with password {password}  (shown only now; keep it)",
                    flush=True,
                )
            await _serve(settings, stop, f"symphainy is up (NATS {settings.nats_url})")
        finally:
            await _stop_workers(workers)
    finally:
        if nats is not None:
            nats.stop()
    log.info("symphainy stopped")


async def _embedded_nats(settings: Settings) -> EmbeddedNats:
    """Start the embedded NATS with authorization on: role secrets made on the first start,
    reused after; each role's context (re)written with the URL the server bound."""
    # JetStream's files hold every session and password hash: the owner's alone.
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.data_dir.chmod(0o700)
    bus = ensure_secrets(settings.data_dir)
    config = write_server_config(bus)
    nats = EmbeddedNats(
        settings.data_dir / "nats", port=settings.nats_port, host="127.0.0.1", config=config
    )
    try:
        await asyncio.to_thread(nats.start)
    except EmbeddedNatsError as exc:
        raise StartupError(str(exc)) from exc
    write_contexts(bus, settings.data_dir, nats.url)
    return nats


async def runtime(settings: Settings) -> None:
    """Runtime worker(s) until stopped."""
    stop = _stop_signal()
    workers = await _start_workers(settings)
    url = identity_for(settings, Role.RUNTIME).url
    print(f"{len(workers)} runtime worker(s) on {url}", flush=True)
    try:
        await stop.wait()
    finally:
        await _stop_workers(workers)


async def experience(settings: Settings) -> None:
    """The Experience Plane until stopped."""
    stop = _stop_signal()
    url = identity_for(settings, Role.EXPERIENCE).url
    await _serve(settings, stop, f"experience plane up (NATS {url})")
