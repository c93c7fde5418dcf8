"""A runtime worker: one FastStream broker joining the family routers over the State Surface,
and an agent runner pulling agent work from JetStream on the same connection.

Workers keep no state of their own; start as many as you like (they share a queue group for
intents and one durable consumer for agent work).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from faststream.nats import NatsBroker
from faststream.nats.security import NatsSecurity, NatsUserPassword
from nats.aio.client import Client

from bus import names
from bus.connection import BusGuard, connection_options
from bus.identity import NatsIdentity, identity_for
from bus.permissions import Role
from bus.settings import Settings
from bus.state import ensure_state_surface
from intents import Ping, PingReply, RuntimeUnavailable, new_id, utcnow
from intents.request import request
from runtime_worker.agents import AgentRunner, Agents, builtin_agents
from runtime_worker.deps import Deps
from runtime_worker.dispatch import Clock, Dispatcher
from runtime_worker.fastlane import FastLane
from runtime_worker.passwords import Passwords
from runtime_worker.routers import session_router, system_router, user_router
from runtime_worker.stats import WorkerTelemetry
from telemetry.record import reconnected

log = logging.getLogger(__name__)

# How long a stopping worker gives the intents in flight to answer.
GRACEFUL_TIMEOUT_S = 5.0


@dataclass
class Worker:
    """A started runtime worker."""

    worker_id: str
    broker: NatsBroker
    nc: Client
    fast: FastLane
    runner: AgentRunner
    telemetry: WorkerTelemetry

    async def stop(self) -> None:
        """Stop taking work, finish (or hand back) what is in flight, disconnect."""
        await self.telemetry.stop()
        await self.runner.stop()
        await self.fast.stop(GRACEFUL_TIMEOUT_S)
        try:
            await self.broker.stop()
        except Exception as exc:
            # NATS is gone (nats-py refuses to drain while reconnecting): close instead, or the
            # connection would go on reconnecting and the process never exit.
            log.warning("runtime worker %s: no clean disconnect (%s)", self.worker_id, exc)
            with contextlib.suppress(Exception):  # closed even when its last flush fails
                await self.nc.close()
        log.info("runtime worker %s stopped", self.worker_id)


def build_broker(identity: NatsIdentity, worker_id: str, guard: BusGuard) -> NatsBroker:
    """The worker's broker. FastStream's per-message log goes to DEBUG: at INFO it costs ~20%."""
    options = connection_options(
        f"symphainy-runtime-{worker_id}", identity, guard, lambda: reconnected(Role.RUNTIME.value)
    )
    # FastStream takes the identity as a security object rather than nats-py's keywords.
    servers = options.pop("servers")
    tls = options.pop("tls", None)
    user, password = options.pop("user", None), options.pop("password", None)
    security: NatsSecurity | None = None
    if user is not None:
        security = NatsUserPassword(user, password or "", ssl_context=tls)
    elif tls is not None:
        security = NatsSecurity(ssl_context=tls)
    return NatsBroker(
        servers,
        security=security,
        log_level=logging.DEBUG,
        graceful_timeout=GRACEFUL_TIMEOUT_S,
        **options,
    )


async def start_worker(
    settings: Settings,
    *,
    clock: Clock = utcnow,
    worker_id: str | None = None,
    passwords: Passwords | None = None,
    agents: Agents | None = None,
) -> Worker:
    """Connect, make sure the State Surface exists, and start answering intents and agent work.

    ``agents`` are the agents this worker runs, by name (default: ``builtin_agents()``).
    """
    worker_id = worker_id or new_id()[:8]
    identity = identity_for(settings, Role.RUNTIME)
    # Anything nats-server refuses while starting (credentials, a subject) fails the start at
    # once with what was refused, rather than as a timeout.
    guard = BusGuard(identity)
    broker = build_broker(identity, worker_id, guard)
    try:
        nc, fast, runner, telemetry = await guard.run(
            _start(broker, settings, clock=clock, worker_id=worker_id, passwords=passwords,
                   agents=agents)
        )  # fmt: skip
        guard.check()
    except BaseException:
        await broker.stop()
        raise
    log.info("runtime worker %s started on %s", worker_id, identity.url)
    return Worker(
        worker_id=worker_id,
        broker=broker,
        nc=nc,
        fast=fast,
        runner=runner,
        telemetry=telemetry,
    )


async def _start(
    broker: NatsBroker,
    settings: Settings,
    *,
    clock: Clock,
    worker_id: str,
    passwords: Passwords | None,
    agents: Agents | None,
) -> tuple[Client, FastLane, AgentRunner, WorkerTelemetry]:
    nc = await broker.connect()
    surface = await ensure_state_surface(nc.jetstream(), settings)
    deps = Deps.over(surface, settings, clock, worker_id, passwords)
    await deps.passwords.warm()
    await _index_older_sessions(nc, deps)
    dispatcher = Dispatcher(nc, clock, settings.runtime_concurrency)
    fast = FastLane(dispatcher)
    for make in (session_router, user_router, system_router):
        broker.include_router(make(deps, dispatcher, fast))
    await broker.start()
    await fast.start(nc)
    runner = AgentRunner(nc, deps, builtin_agents() if agents is None else agents, settings)
    await runner.start()
    try:
        # Make sure intents reach us before anyone is told we are up.
        await nc.flush()
        await _until_answering(nc, settings.request_timeout_s)
    except BaseException:
        await runner.stop()
        await fast.stop(0)
        raise
    return nc, fast, runner, await WorkerTelemetry.start(nc, worker_id, dispatcher.stats)


async def _index_older_sessions(nc: Client, deps: Deps) -> None:
    """Give sessions stored before the ``sessions_by_user`` index existed their entries.

    Every newer session is indexed before it is stored, so the index never holds fewer entries
    than the bucket unless older sessions are there: two stream infos decide, once per start.
    """
    js = nc.jetstream()
    stored = await js.stream_info(names.kv_stream(names.SESSIONS_BUCKET))
    indexed = await js.stream_info(names.kv_stream(names.SESSIONS_BY_USER_BUCKET))
    if indexed.state.messages >= stored.state.messages:
        return
    added = await deps.sessions.reindex()
    log.info("indexed %d session(s) stored before the sessions_by_user index", added)


async def _until_answering(nc: Client, timeout: float) -> None:
    """Wait until a ping on the bus is answered.

    A flush after subscribing is not always enough: measured here, about one start in fifteen
    still saw "no responders" from another connection for about a millisecond afterwards.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await request(nc, Ping(actor="runtime-start"), PingReply, timeout)
            return
        except RuntimeUnavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.002)
