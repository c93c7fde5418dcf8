"""The State Surface on JetStream: the ``INTENTS`` audit stream, the KV buckets, and the
``AGENT_WORK`` queue with its one durable consumer.

``ensure_state_surface`` is idempotent: every runtime worker calls it at start, and a second
caller finds what the first one made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from bus import names
from bus.settings import Settings

log = logging.getLogger(__name__)

# How long a handover code of an OpenID login lives in its bucket (the runtime also checks the
# code's own expiry, which is shorter: the bucket's clock only sweeps).
HANDOVER_TTL_S = 120.0


@dataclass(frozen=True)
class StateSurface:
    """Handles on the buckets the runtime reads and writes."""

    sessions: KeyValue
    sessions_by_user: KeyValue
    users: KeyValue
    idempotency: KeyValue
    login_attempts: KeyValue
    identities: KeyValue
    handovers: KeyValue


def audit_stream_config(settings: Settings) -> StreamConfig:
    """The audit log of executed intents; ``no_ack`` so it never answers a publisher."""
    return StreamConfig(
        name=names.INTENTS_STREAM,
        description="Audit log of every intent the runtime executed (secrets redacted)",
        subjects=[names.AUDIT_ALL],
        storage=StorageType.FILE,
        num_replicas=settings.kv_replicas,
        no_ack=True,
        max_age=settings.audit_max_age_s,
        max_bytes=settings.audit_max_bytes,
        discard=DiscardPolicy.OLD,
    )


def agent_work_stream_config(settings: Settings) -> StreamConfig:
    """Agent work waiting for a worker: a work queue, so a message is gone once it is answered.

    Full means new work is refused (the gate tells the client) rather than old work dropped.
    """
    return StreamConfig(
        name=names.AGENT_WORK_STREAM,
        description="Agent work (RunAgent) waiting for a runtime worker; removed once answered",
        subjects=[names.AGENT_ALL],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=settings.kv_replicas,
        max_msgs=settings.agent_queue_max_msgs,
        discard=DiscardPolicy.NEW,
    )


def agent_consumer_config(settings: Settings) -> ConsumerConfig:
    """The durable pull consumer every worker shares, so work is load-balanced across them.

    One delivery more than ``agent_max_attempts``: the last one is answered with an error
    instead of being run, so a message that keeps killing workers still gets a reply.
    """
    return ConsumerConfig(
        name=names.AGENT_CONSUMER,
        durable_name=names.AGENT_CONSUMER,
        description="Runtime workers executing agent work",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.agent_ack_wait_s,
        max_deliver=settings.agent_max_attempts + 1,
    )


def bucket_configs(settings: Settings) -> list[KeyValueConfig]:
    """The KV buckets. Session entries outlive the longest session by a day, then vanish."""

    def bucket(name: str, description: str, ttl: float | None) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=name,
            description=description,
            ttl=ttl,
            history=1,
            storage=StorageType.FILE,
            replicas=settings.kv_replicas,
            direct=True,
        )

    session_ttl = float(settings.session_max_lifetime_s + 24 * 3600)
    return [
        bucket(names.SESSIONS_BUCKET, "Sessions by id (JSON)", session_ttl),
        bucket(names.SESSIONS_BY_USER_BUCKET, "Session ids by user id", session_ttl),
        bucket(names.USERS_BUCKET, "Users by lowercased name (JSON)", None),
        bucket(
            names.LOGIN_ATTEMPTS_BUCKET,
            "Login attempts per (username, address) and failures per username in the window",
            settings.login_rate_window_s,
        ),
        bucket(
            names.IDEMPOTENCY_BUCKET,
            "Idempotency keys of session creation",
            float(settings.idempotency_ttl_s),
        ),
        bucket(names.IDENTITIES_BUCKET, "External identities: (issuer, subject) to user", None),
        bucket(names.HANDOVERS_BUCKET, "One-time handover codes of OpenID logins", HANDOVER_TTL_S),
    ]


async def ensure_state_surface(js: JetStreamContext, settings: Settings) -> StateSurface:
    """Create (or bring up to date) the streams, the agent consumer and the buckets."""
    stream = audit_stream_config(settings)
    try:
        await js.stream_info(names.INTENTS_STREAM)
    except NotFoundError:
        try:
            await js.add_stream(stream)
        except BadRequestError:
            # Another worker created it between our two calls.
            await js.stream_info(names.INTENTS_STREAM)
    await _stream(js, agent_work_stream_config(settings))
    # CONSUMER.CREATE with a name creates, or updates a consumer whose config differs.
    await js.add_consumer(names.AGENT_WORK_STREAM, agent_consumer_config(settings))
    buckets: dict[str, KeyValue] = {}
    for config in bucket_configs(settings):
        buckets[config.bucket] = await _bucket(js, config)
    return StateSurface(
        sessions=buckets[names.SESSIONS_BUCKET],
        sessions_by_user=buckets[names.SESSIONS_BY_USER_BUCKET],
        users=buckets[names.USERS_BUCKET],
        idempotency=buckets[names.IDEMPOTENCY_BUCKET],
        login_attempts=buckets[names.LOGIN_ATTEMPTS_BUCKET],
        identities=buckets[names.IDENTITIES_BUCKET],
        handovers=buckets[names.HANDOVERS_BUCKET],
    )


async def _bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    try:
        return await js.key_value(config.bucket)
    except BucketNotFoundError:
        pass
    try:
        return await js.create_key_value(config)
    except BadRequestError:
        return await js.key_value(config.bucket)


async def _stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or update it if it exists with another config."""
    try:
        await js.add_stream(config)
    except BadRequestError:  # "stream name already in use with a different configuration"
        await js.update_stream(config)
