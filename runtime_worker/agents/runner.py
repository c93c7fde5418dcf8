"""A worker's agent runner: pull work from the shared durable consumer, answer it, then ack.

Every worker binds to the one durable pull consumer ``agent-runners`` on ``AGENT_WORK``, so work
is shared among the workers. A message is acked only once its result was published: work on a
worker that dies mid-run is redelivered to another after ``ack_wait``, and a worker that stops
mid-run hands its unfinished work back at once (``nak``). While an agent runs, its delivery is
kept alive with ``in_progress``, so a long run is not taken for a dead worker.

Every worker also hears ``CancelAgentRun`` (the gate sends it when a socket closes with runs in
flight): the worker holding such a run cancels it, acks it and audits it as ``cancelled``; work
cancelled before any worker took it is remembered and dropped the same way when it is fetched.
Each run may send at most ``agent_max_events_per_run`` events and
``agent_max_event_bytes_per_run`` bytes; past that it ends with ``run_limit_exceeded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.client import JetStreamContext
from pydantic import ValidationError

from bus import names
from bus.settings import Settings
from intents import AgentEvent, AgentResult, RunAgent, SymphainyError
from intents.agent import CANCELLED, CancelAgentRun
from runtime_worker.agents.base import Agents
from runtime_worker.agents.execute import failed, outcome, run_intent
from runtime_worker.agents.limits import RunBudget
from runtime_worker.deps import Deps
from runtime_worker.dispatch import audit, describe
from runtime_worker.stats import agent_event, agent_label, agent_run
from telemetry import tracing

log = logging.getLogger(__name__)

# A fetch waits this long on the server for work before asking again.
FETCH_TIMEOUT_S = 5.0
# After a failed fetch (NATS reconnecting, say), wait this long before the next one.
FETCH_RETRY_S = 0.5
# Cancelled intent ids a worker remembers for work not yet fetched (any worker may fetch it).
RECENTLY_CANCELLED_MAX = 10_000

PullSubscription = JetStreamContext.PullSubscription


@dataclass(frozen=True)
class _Run:
    """A run in progress on this worker."""

    session_id: str
    task: asyncio.Task[tuple[AgentResult, bytes]]


class AgentRunner:
    """Runs at most ``agent_concurrency`` agents at a time on one connection."""

    def __init__(self, nc: Client, deps: Deps, agents: Agents, settings: Settings) -> None:
        self._nc = nc
        self._deps = deps
        self._agents = agents
        self._concurrency = settings.agent_concurrency
        self._keep_alive_s = settings.agent_ack_wait_s / 3
        self._max_attempts = settings.agent_max_attempts
        self._drain_s = settings.agent_drain_timeout_s
        self._max_events = settings.agent_max_events_per_run
        self._max_bytes = settings.agent_max_event_bytes_per_run
        self._sub: PullSubscription | None = None
        self._cancels: Subscription | None = None
        self._puller: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._runs: dict[str, _Run] = {}
        # intent id -> session id of cancellations that found no run here (yet).
        self._cancelled: OrderedDict[str, str] = OrderedDict()

    async def start(self) -> None:
        """Hear cancellations, bind to the durable consumer (``ensure_state_surface`` made it)
        and start pulling."""
        self._cancels = await self._nc.subscribe(names.AGENT_CANCEL, cb=self._on_cancel)
        self._sub = await self._nc.jetstream().pull_subscribe_bind(
            names.AGENT_CONSUMER, stream=names.AGENT_WORK_STREAM
        )
        self._puller = asyncio.create_task(self._pull(self._sub), name="agent-puller")

    async def stop(self) -> None:
        """Stop pulling, give runs ``agent_drain_timeout_s`` to finish, hand the rest back."""
        if self._puller is None:
            return
        self._puller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._puller
        self._puller = None
        # Unsubscribe before handing work back: while our inbox has interest, the server may
        # give a nak'd message straight back to our own pull request, which nobody will read.
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if self._running:
            _, unfinished = await asyncio.wait(set(self._running), timeout=self._drain_s)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        if self._cancels is not None:
            with contextlib.suppress(Exception):
                await self._cancels.unsubscribe()
            self._cancels = None
        # The last acks and naks must reach the server before the broker closes the connection.
        with contextlib.suppress(Exception):
            await self._nc.flush()

    async def _pull(self, sub: PullSubscription) -> None:
        while True:
            free = self._concurrency - len(self._running)
            if free <= 0:
                await asyncio.wait(set(self._running), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                msgs = await sub.fetch(batch=free, timeout=FETCH_TIMEOUT_S)
            except TimeoutError:
                continue
            except Exception as exc:
                log.warning("could not fetch agent work: %s", exc or type(exc).__name__)
                await asyncio.sleep(FETCH_RETRY_S)
                continue
            for msg in msgs:
                task = asyncio.create_task(self._handle(msg))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    @tracing.runs_agent
    async def _handle(self, msg: Msg) -> None:
        correlation_id = (msg.headers or {}).get(names.CORRELATION_HEADER, "-")
        try:
            intent = RunAgent.model_validate_json(msg.data)
        except ValidationError as exc:
            # Nobody to answer: drop it rather than have it delivered again and again.
            log.warning("dropped malformed agent intent [%s]: %s", correlation_id, describe(exc))
            await _settle(msg.term)
            return
        if not names.is_agent_reply_subject(intent.reply_subject):
            log.warning(
                "dropped agent intent %s: %r is no socket's reply subject [%s]",
                intent.intent_id,
                intent.reply_subject,
                intent.correlation_id,
            )
            await _settle(msg.term)
            return
        if self._cancelled.pop(intent.intent_id, None) == intent.session_id:
            await self._drop_cancelled(msg, intent)
            return
        attempt, started = msg.metadata.num_delivered, perf_counter()
        run = asyncio.create_task(self._result(intent, attempt))
        self._runs[intent.intent_id] = _Run(intent.session_id, run)
        keep_alive = asyncio.create_task(self._keep_alive(msg))
        try:
            result, body = await run
        except asyncio.CancelledError:
            if _this_task_cancelled():
                await _settle(msg.nak)  # stopping: another worker can take it now
                raise
            await self._drop_cancelled(msg, intent)  # only the run was: its socket is gone
            return
        finally:
            keep_alive.cancel()
            self._runs.pop(intent.intent_id, None)
        try:
            await self._publish(intent, body)
        except Exception as exc:
            log.warning(
                "could not answer agent intent %s, left for redelivery [%s]: %s",
                intent.intent_id,
                intent.correlation_id,
                exc,
            )
            return
        # DEBUG: the audit record and the metrics say the same for every run, at no cost to it.
        log.debug(
            "agent %s %s -> %s (attempt %d) [%s]",
            intent.agent,
            intent.intent_id,
            outcome(result),
            attempt,
            intent.correlation_id,
        )
        agent = agent_label(self._agents, intent.agent)
        agent_run(agent, outcome(result), perf_counter() - started)
        tracing.record_outcome(outcome(result))
        await audit(self._nc, intent, outcome(result))
        await _settle(msg.ack)

    async def _result(self, intent: RunAgent, attempt: int) -> tuple[AgentResult, bytes]:
        """The run's result and its JSON, serialised once."""
        if attempt > self._max_attempts:
            log.error(
                "agent %s %s abandoned after %d attempts [%s]",
                intent.agent,
                intent.intent_id,
                self._max_attempts,
                intent.correlation_id,
            )
            error = SymphainyError("agent work abandoned after repeated failures")
            abandoned = failed(intent, error)
            return abandoned, abandoned.model_dump_json().encode()

        budget = RunBudget(self._max_events, self._max_bytes)

        async def emit(data: dict[str, Any]) -> None:
            event = AgentEvent(
                intent_id=intent.intent_id,
                client_id=intent.client_id,
                correlation_id=intent.correlation_id,
                data=data,
            )
            body = event.model_dump_json().encode()
            budget.spend(len(body))
            await self._publish(intent, body)
            agent_event(agent_label(self._agents, intent.agent))

        result = await run_intent(
            intent,
            self._agents,
            self._deps.sessions,
            self._deps.policy,
            emit,
            now=self._deps.clock(),
            worker_id=self._deps.worker_id,
            attempt=attempt,
        )
        body = result.model_dump_json().encode()
        settled = budget.settle(intent, result, len(body))
        return settled, body if settled is result else settled.model_dump_json().encode()

    async def _publish(self, intent: RunAgent, body: bytes) -> None:
        await self._nc.publish(
            intent.reply_subject,
            body,
            headers=tracing.inject(
                {
                    names.CORRELATION_HEADER: intent.correlation_id,
                    names.INTENT_ID_HEADER: intent.intent_id,
                }
            ),
        )

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            cancel = CancelAgentRun.model_validate_json(msg.data)
        except ValidationError as exc:
            log.warning("dropped malformed agent cancellation: %s", describe(exc))
            return
        for intent_id in cancel.intent_ids:
            run = self._runs.get(intent_id)
            if run is None:
                self._cancelled[intent_id] = cancel.session_id
                self._cancelled.move_to_end(intent_id)
                while len(self._cancelled) > RECENTLY_CANCELLED_MAX:
                    self._cancelled.popitem(last=False)
            elif run.session_id == cancel.session_id:
                run.task.cancel()

    async def _drop_cancelled(self, msg: Msg, intent: RunAgent) -> None:
        """Settle a cancelled run: nobody is left to answer, so ack it and audit why."""
        log.info(
            "agent %s %s -> %s [%s]",
            intent.agent,
            intent.intent_id,
            CANCELLED,
            intent.correlation_id,
        )
        agent_run(agent_label(self._agents, intent.agent), CANCELLED, None)
        await audit(self._nc, intent, CANCELLED)
        await _settle(msg.ack)

    async def _keep_alive(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self._keep_alive_s)
            try:
                await msg.in_progress()
            except Exception:
                log.debug("could not extend an agent delivery", exc_info=True)


def _this_task_cancelled() -> bool:
    """Whether the running task itself is being cancelled (not only something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _settle(action: Callable[[], Awaitable[None]]) -> None:
    """Ack, nak or term; a failure only means the server will redeliver after ``ack_wait``."""
    try:
        await action()
    except Exception:
        log.warning("could not settle an agent delivery", exc_info=True)
