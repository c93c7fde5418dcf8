"""Agent work through the ``AGENT_WORK`` queue on a real nats-server: answers, failures,
redelivery after a worker stops or dies mid-run, and load shared between workers.
"""

from __future__ import annotations

import asyncio
import collections
import sys
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, RetentionPolicy, StorageType
from pydantic import TypeAdapter

from bus import names
from bus.embedded import EmbeddedNats
from bus.settings import Settings
from intents import (
    AgentEvent,
    AgentReply,
    AgentResult,
    CreateSession,
    CreateSessionReply,
    RevokeSession,
    RunAgent,
)
from intents.agent import CANCELLED, CancelAgentRun
from intents.request import ask, intent_headers
from runtime_worker.agents import AgentContext, builtin_agents
from runtime_worker.app import Worker
from tests.nats.conftest import StartWorker
from tests.nats.held_worker import hold

ALICE = "a" * 32
REPO = Path(__file__).resolve().parents[2]

_replies: TypeAdapter[AgentEvent | AgentResult] = TypeAdapter(AgentReply)


class Socket:
    """Stands in for one gate socket: submits agent work and reads what comes back."""

    def __init__(self, nc: Client, session_id: str, sub: Subscription, socket_id: str) -> None:
        self.nc = nc
        self.session_id = session_id
        self.sub = sub
        self.reply_subject = names.agent_reply_subject("gate", socket_id)

    async def submit(self, agent: str, payload: dict[str, Any] | None = None) -> RunAgent:
        intent = RunAgent(
            session_id=self.session_id,
            user_id=ALICE,
            agent=agent,
            payload=payload or {},
            client_id="c1",
            reply_subject=self.reply_subject,
        ).with_deadline(60)
        assert isinstance(intent, RunAgent)
        await self.nc.jetstream().publish(
            names.AGENT_RUN, intent.to_wire(), headers=intent_headers(intent)
        )
        return intent

    async def next(self, timeout: float = 5.0) -> AgentEvent | AgentResult:
        msg = await self.sub.next_msg(timeout=timeout)
        assert msg.headers is not None
        reply = _replies.validate_json(msg.data)
        assert msg.headers[names.CORRELATION_HEADER] == reply.correlation_id
        return reply

    async def until_result(self, timeout: float = 5.0) -> tuple[list[AgentEvent], AgentResult]:
        events: list[AgentEvent] = []
        while True:
            reply = await self.next(timeout)
            if isinstance(reply, AgentResult):
                return events, reply
            events.append(reply)


async def open_socket(nc: Client, socket_id: str = "s1") -> Socket:
    """A new live session of alice and a subscription to one socket's replies.

    A worker must be running to answer ``CreateSession``.
    """
    sub = await nc.subscribe(names.agent_reply_subject("gate", socket_id))
    reply = await ask(nc, CreateSession(user_id=ALICE, username="alice"), 2.0)
    assert isinstance(reply, CreateSessionReply)
    return Socket(nc, reply.session.session_id, sub, socket_id)


@pytest.fixture
async def socket(nc: Client, worker: Worker) -> Socket:
    """A socket served by the default worker."""
    return await open_socket(nc)


async def test_agent_work_stream_and_consumer_are_as_the_contract_says(
    nc: Client, settings: Settings, worker: Worker
) -> None:
    js = nc.jetstream()
    stream = await js.stream_info(names.AGENT_WORK_STREAM)
    assert stream.config.retention == RetentionPolicy.WORK_QUEUE
    assert stream.config.storage == StorageType.FILE
    assert stream.config.subjects == [names.AGENT_ALL]
    assert stream.config.num_replicas == settings.kv_replicas
    consumer = await js.consumer_info(names.AGENT_WORK_STREAM, names.AGENT_CONSUMER)
    assert consumer.config.durable_name == names.AGENT_CONSUMER
    assert consumer.config.ack_policy == AckPolicy.EXPLICIT
    assert consumer.config.max_deliver == settings.agent_max_attempts + 1


async def test_echo_streams_events_then_its_result(worker: Worker, socket: Socket) -> None:
    intent = await socket.submit("echo", {"items": [1, 2, 3], "n": 7})
    events, result = await socket.until_result()
    assert [e.data for e in events] == [{"item": 1}, {"item": 2}, {"item": 3}]
    assert result.ok is True
    assert result.data == {"items": [1, 2, 3], "n": 7}
    for reply in [*events, result]:
        assert (reply.intent_id, reply.client_id) == (intent.intent_id, "c1")
        assert reply.correlation_id == intent.correlation_id


async def test_session_agent_reads_the_callers_session(worker: Worker, socket: Socket) -> None:
    await socket.submit("session")
    _, result = await socket.until_result()
    assert result.data is not None
    assert result.data["session_id"] == socket.session_id
    assert (result.data["state"], result.data["username"]) == ("active", "alice")


async def test_unknown_agent_and_bad_payload_get_error_results(
    worker: Worker, socket: Socket
) -> None:
    await socket.submit("no-such-agent")
    _, result = await socket.until_result()
    assert result.ok is False
    assert result.error is not None
    assert result.error.code == "agent_not_found"
    await socket.submit("echo", {"items": "not a list"})
    _, result = await socket.until_result()
    assert result.error is not None
    assert result.error.code == "invalid_intent"


async def test_revoked_session_gets_an_error_result(
    nc: Client, worker: Worker, socket: Socket
) -> None:
    await ask(nc, RevokeSession(session_id=socket.session_id), 2.0)
    await socket.submit("echo", {"items": [1]})
    events, result = await socket.until_result()
    assert events == []
    assert result.error is not None
    assert result.error.code == "session_revoked"


async def test_answered_work_leaves_the_queue_and_is_audited(
    nc: Client, worker: Worker, socket: Socket
) -> None:
    js = nc.jetstream()
    intent = await socket.submit("no-such-agent")
    await socket.until_result()
    await worker.stop()  # flushes: the ack has reached the server
    audit = await js.subscribe(
        names.audit_subject(names.AGENT_RUN), stream=names.INTENTS_STREAM, ordered_consumer=True
    )
    record = await audit.next_msg(timeout=2)
    await audit.unsubscribe()
    assert record.headers is not None
    assert record.headers[names.OUTCOME_HEADER] == "agent_not_found"
    assert record.headers[names.CORRELATION_HEADER] == intent.correlation_id
    consumer = await js.consumer_info(names.AGENT_WORK_STREAM, names.AGENT_CONSUMER)
    assert consumer.num_ack_pending == 0
    assert consumer.num_pending == 0


async def test_work_queued_while_no_worker_runs_is_done_when_one_starts(
    nc: Client, start: StartWorker
) -> None:
    first = await start()  # makes the stream, answers CreateSession
    socket = await open_socket(nc)
    await first.stop()
    await socket.submit("echo", {"n": 1})
    await start()
    _, result = await socket.until_result()
    assert result.data == {"n": 1}


async def test_work_held_by_a_stopping_worker_goes_to_another_at_once(
    nc: Client, settings: Settings, start: StartWorker
) -> None:
    started: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    async def block(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
        await started.put((ctx.worker_id, ctx.attempt))
        if ctx.attempt == 1:
            await asyncio.Event().wait()  # held until its worker stops
        return {"worker": ctx.worker_id}

    agents = {**builtin_agents(), "block": block}
    no_drain = settings.model_copy(update={"agent_drain_timeout_s": 0.0})
    first = await start(agents=agents, settings=no_drain)
    socket = await open_socket(nc)
    await socket.submit("block")
    assert await asyncio.wait_for(started.get(), 5) == (first.worker_id, 1)
    second = await start(agents=agents, settings=no_drain)
    await first.stop()  # nak: no wait for ack_wait (30 s by default)
    assert await asyncio.wait_for(started.get(), 5) == (second.worker_id, 2)
    events, result = await socket.until_result()
    assert events == []
    assert result.data == {"worker": second.worker_id}


async def test_work_of_a_killed_worker_is_redelivered_to_another(
    nc: Client, nats_server: EmbeddedNats, settings: Settings, start: StartWorker
) -> None:
    fast = settings.model_copy(update={"agent_ack_wait_s": 1.0})
    agents = {**builtin_agents(), "hold": hold}
    setup = await start(settings=fast)
    socket = await open_socket(nc)
    await setup.stop()
    await socket.submit("hold")  # queued: no worker runs
    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.nats.held_worker",
        nats_server.url,
        "1.0",
        str(settings.data_dir),
        cwd=REPO,
    )
    try:
        first = await socket.next(timeout=30)  # the process has started and is running it
        assert isinstance(first, AgentEvent)
        assert first.data == {"worker": "doomed", "attempt": 1}
    finally:
        doomed.kill()  # SIGKILL: no nak, no goodbye
        await doomed.wait()
    survivor = await start(settings=fast, agents=agents)
    events, result = await socket.until_result(timeout=10)
    assert [e.data for e in events] == [{"worker": survivor.worker_id, "attempt": 2}]
    assert result.data == {"worker": survivor.worker_id, "attempt": 2}


async def test_workers_share_the_load(settings: Settings, start: StartWorker, nc: Client) -> None:
    release = asyncio.Event()
    started: asyncio.Queue[str] = asyncio.Queue()

    async def block(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
        await started.put(ctx.worker_id)
        await release.wait()
        return {"worker": ctx.worker_id}

    agents = {**builtin_agents(), "block": block}
    two_at_a_time = settings.model_copy(update={"agent_concurrency": 2})
    first = await start(agents=agents, settings=two_at_a_time)
    second = await start(agents=agents, settings=two_at_a_time)
    socket = await open_socket(nc)
    for _ in range(4):
        await socket.submit("block")
    # Each worker runs at most two at a time, so the four must be split two and two.
    running = [await asyncio.wait_for(started.get(), 5) for _ in range(4)]
    assert collections.Counter(running) == {first.worker_id: 2, second.worker_id: 2}
    release.set()
    results = [(await socket.until_result())[1] for _ in range(4)]
    assert all(r.ok for r in results)
    assert collections.Counter(r.data["worker"] for r in results if r.data) == {
        first.worker_id: 2,
        second.worker_id: 2,
    }


async def test_malformed_work_is_dropped_and_does_not_block_the_queue(
    nc: Client, worker: Worker, socket: Socket
) -> None:
    js = nc.jetstream()
    await js.publish(names.AGENT_RUN, b"not json")
    foreign = RunAgent(
        session_id=socket.session_id,
        user_id=ALICE,
        agent="echo",
        client_id="c1",
        reply_subject=names.SESSION_REVOKE,  # only a socket's reply subject is ever answered
    )
    await js.publish(names.AGENT_RUN, foreign.to_wire())
    await socket.submit("echo", {"after": True})
    _, result = await socket.until_result()
    assert result.data == {"after": True}
    await worker.stop()
    assert (await js.stream_info(names.AGENT_WORK_STREAM)).state.messages == 0


async def test_work_that_keeps_failing_to_finish_is_answered_with_an_error(
    nc: Client, settings: Settings, start: StartWorker
) -> None:
    started: asyncio.Queue[int] = asyncio.Queue()

    async def block(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
        await started.put(ctx.attempt)
        await asyncio.Event().wait()
        return {}

    agents = {**builtin_agents(), "block": block}
    once = settings.model_copy(update={"agent_max_attempts": 1, "agent_drain_timeout_s": 0.0})
    first = await start(agents=agents, settings=once)
    socket = await open_socket(nc)
    await socket.submit("block")
    assert await asyncio.wait_for(started.get(), 5) == 1
    await start(agents=agents, settings=once)
    await first.stop()
    _, result = await socket.until_result()
    assert started.empty()  # the second delivery was answered, not run
    assert result.error is not None
    assert result.error.code == "internal"


async def audit_outcome(nc: Client, intent_id: str, timeout: float = 5.0) -> str:
    """The outcome in the audit record of one agent intent (waits for it)."""
    records = await nc.jetstream().subscribe(
        names.audit_subject(names.AGENT_RUN), stream=names.INTENTS_STREAM, ordered_consumer=True
    )
    try:
        while True:
            record = await records.next_msg(timeout=timeout)
            assert record.headers is not None
            if record.headers[names.INTENT_ID_HEADER] == intent_id:
                return record.headers[names.OUTCOME_HEADER]
    finally:
        await records.unsubscribe()


async def cancel(nc: Client, session_id: str, *intents: RunAgent) -> None:
    request = CancelAgentRun(session_id=session_id, intent_ids=tuple(i.intent_id for i in intents))
    await nc.publish(names.AGENT_CANCEL, request.to_wire())


async def test_a_cancelled_run_stops_and_is_acked_and_audited_as_cancelled(
    nc: Client, start: StartWorker
) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def block(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return {}

    worker = await start(agents={**builtin_agents(), "block": block})
    socket = await open_socket(nc)
    intent = await socket.submit("block")
    await asyncio.wait_for(started.wait(), 5)
    await cancel(nc, "f" * 32, intent)  # another session's cancellation is not obeyed
    await socket.submit("echo")  # a round trip through the worker after that cancellation
    _, later = await socket.until_result()
    assert later.ok
    assert not stopped.is_set()
    await cancel(nc, socket.session_id, intent)
    await asyncio.wait_for(stopped.wait(), 5)
    assert await audit_outcome(nc, intent.intent_id) == CANCELLED
    await worker.stop()  # flushes: the ack has reached the server
    consumer = await nc.jetstream().consumer_info(names.AGENT_WORK_STREAM, names.AGENT_CONSUMER)
    assert (consumer.num_ack_pending, consumer.num_pending) == (0, 0)


async def test_work_cancelled_before_a_worker_took_it_is_dropped_unrun(
    nc: Client, settings: Settings, start: StartWorker
) -> None:
    release = asyncio.Event()
    ran: list[str] = []

    async def block(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
        ran.append(ctx.intent.intent_id)
        await release.wait()
        return {}

    one_at_a_time = settings.model_copy(update={"agent_concurrency": 1})
    await start(agents={**builtin_agents(), "block": block}, settings=one_at_a_time)
    socket = await open_socket(nc)
    first = await socket.submit("block")
    queued = await socket.submit("block")  # waits: the worker runs one at a time
    await cancel(nc, socket.session_id, queued)
    await nc.flush()
    release.set()
    _, result = await socket.until_result()
    assert (result.intent_id, result.ok) == (first.intent_id, True)
    assert await audit_outcome(nc, queued.intent_id) == CANCELLED
    assert ran == [first.intent_id]


async def test_a_run_past_its_event_cap_ends_with_an_error(
    nc: Client, settings: Settings, start: StartWorker
) -> None:
    await start(settings=settings.model_copy(update={"agent_max_events_per_run": 5}))
    socket = await open_socket(nc)
    intent = await socket.submit("echo", {"items": list(range(29_000))})
    events, result = await socket.until_result()
    assert len(events) == 5
    assert result.error is not None
    assert result.error.code == "run_limit_exceeded"
    assert await audit_outcome(nc, intent.intent_id) == "run_limit_exceeded"
