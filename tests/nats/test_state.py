"""The State Surface: buckets and stream as the contract describes, created idempotently."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.js.api import StorageType

from bus import names
from bus.settings import Settings
from bus.state import ensure_state_surface


async def test_ensure_is_idempotent_and_concurrent_safe(nc: Client, settings: Settings) -> None:
    js = nc.jetstream()
    await asyncio.gather(*(ensure_state_surface(js, settings) for _ in range(4)))
    await ensure_state_surface(js, settings)
    for bucket in (names.SESSIONS_BUCKET, names.USERS_BUCKET, names.IDEMPOTENCY_BUCKET):
        status = await (await js.key_value(bucket)).status()
        assert status.stream_info.config.storage == StorageType.FILE
        assert status.stream_info.config.num_replicas == settings.kv_replicas
    audit = await js.stream_info(names.INTENTS_STREAM)
    assert audit.config.no_ack is True
    assert audit.config.storage == StorageType.FILE


async def test_sessions_outlive_their_longest_lifetime_then_vanish(
    nc: Client, settings: Settings
) -> None:
    js = nc.jetstream()
    await ensure_state_surface(js, settings)
    status = await (await js.key_value(names.SESSIONS_BUCKET)).status()
    assert status.stream_info.config.max_age == settings.session_max_lifetime_s + 24 * 3600


async def test_agent_queue_and_consumer_follow_the_settings(nc: Client, settings: Settings) -> None:
    js = nc.jetstream()
    await ensure_state_surface(js, settings)
    changed = settings.model_copy(
        update={"agent_ack_wait_s": 7.0, "agent_max_attempts": 2, "agent_queue_max_msgs": 10}
    )
    await ensure_state_surface(js, changed)
    consumer = await js.consumer_info(names.AGENT_WORK_STREAM, names.AGENT_CONSUMER)
    assert consumer.config.ack_wait == 7.0
    assert consumer.config.max_deliver == 3
    stream = await js.stream_info(names.AGENT_WORK_STREAM)
    assert stream.config.max_msgs == 10
    # The work queue and the audit log capture disjoint subjects (JetStream demands it).
    audit = await js.stream_info(names.INTENTS_STREAM)
    assert set(stream.config.subjects or []).isdisjoint(audit.config.subjects or [])
