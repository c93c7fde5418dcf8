"""A worker's agent runner: pull work from the shared durable consumer, answer it, then ack.

Every worker binds to the one durable pull consumer ``agent-runners`` on ``AGENT_WORK``, so work
is shared among the workers. A message is acked only once its result was published: work on a
worker that dies mid-run is redelivered to another after ``ack_wait``, and a worker that stops
mid-run hands its unfinished work back at once (``nak``). While an agent runs, its delivery is
kept alive with ``in_progress``, so a long run is not taken for a dead worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from pydantic import ValidationError

from bus import names
from bus.settings import Settings
from intents import AgentEvent, AgentMessage, AgentResult, RunAgent, SymphainyError
from runtime_worker.agents.base import Agents
from runtime_worker.agents.execute import failed, outcome, run_intent
from runtime_worker.deps import Deps
from runtime_worker.dispatch import audit, describe

log = logging.getLogger(__name__)

# A fetch waits this long on the server for work before asking again.
FETCH_TIMEOUT_S = 5.0
# After a failed fetch (NATS reconnecting, say), wait this long before the next one.
FETCH_RETRY_S = 0.5

PullSubscription = JetStreamContext.PullSubscription


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
        self._sub: PullSubscription | None = None
        self._puller: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind to the durable consumer (``ensure_state_surface`` made it) and start pulling."""
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
        attempt = msg.metadata.num_delivered
        keep_alive = asyncio.create_task(self._keep_alive(msg))
        try:
            result = await self._result(intent, attempt)
        except asyncio.CancelledError:
            await _settle(msg.nak)  # stopping: another worker can take it now
            raise
        finally:
            keep_alive.cancel()
        try:
            await self._send(intent, result)
        except Exception as exc:
            log.warning(
                "could not answer agent intent %s, left for redelivery [%s]: %s",
                intent.intent_id,
                intent.correlation_id,
                exc,
            )
            return
        log.info(
            "agent %s %s -> %s (attempt %d) [%s]",
            intent.agent,
            intent.intent_id,
            outcome(result),
            attempt,
            intent.correlation_id,
        )
        await audit(self._nc, intent, outcome(result))
        await _settle(msg.ack)

    async def _result(self, intent: RunAgent, attempt: int) -> AgentResult:
        if attempt > self._max_attempts:
            log.error(
                "agent %s %s abandoned after %d attempts [%s]",
                intent.agent,
                intent.intent_id,
                self._max_attempts,
                intent.correlation_id,
            )
            return failed(intent, SymphainyError("agent work abandoned after repeated failures"))

        async def emit(data: dict[str, Any]) -> None:
            event = AgentEvent(
                intent_id=intent.intent_id,
                client_id=intent.client_id,
                correlation_id=intent.correlation_id,
                data=data,
            )
            await self._send(intent, event)

        return await run_intent(
            intent,
            self._agents,
            self._deps.sessions,
            self._deps.policy,
            emit,
            now=self._deps.clock(),
            worker_id=self._deps.worker_id,
            attempt=attempt,
        )

    async def _send(self, intent: RunAgent, message: AgentMessage) -> None:
        await self._nc.publish(
            intent.reply_subject,
            message.model_dump_json().encode(),
            headers={
                names.CORRELATION_HEADER: intent.correlation_id,
                names.INTENT_ID_HEADER: intent.intent_id,
            },
        )

    async def _keep_alive(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self._keep_alive_s)
            try:
                await msg.in_progress()
            except Exception:
                log.debug("could not extend an agent delivery", exc_info=True)


async def _settle(action: Callable[[], Awaitable[None]]) -> None:
    """Ack, nak or term; a failure only means the server will redeliver after ``ack_wait``."""
    try:
        await action()
    except Exception:
        log.warning("could not settle an agent delivery", exc_info=True)
