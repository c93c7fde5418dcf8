"""Who may do what on the bus: one NATS identity per role, enforced by nats-server itself.

Every subject and JetStream API call a component makes is allowed here for its role and for no
other; a new subject in ``bus/names.py`` is usable by nobody until it is added below. Denies
repeat the invariants that matter most, so a future allow that is too broad cannot undo them.

====================  ==================================================================
role                  may
====================  ==================================================================
``runtime``           serve ``intents.>`` and ``credentials.>`` in queue group ``runtime``,
                      own the streams and buckets, reply to every role's inbox, publish agent
                      replies and audit records, hear agent cancellations (every worker),
                      answer ``$SRV`` PING/INFO/STATS as ``symphainy-runtime`` (every worker)
``experience``        send the intents a web front needs, queue and cancel agent work, watch the
                      ``sessions`` bucket; receive only its own replies and agent replies
``admin``             send the operator intents (users, sessions); nothing else
``inspector``         watch ``intents.>`` and ``audit.>``, read the audit stream and the
                      ``sessions`` buckets, ping, ``$SRV`` requests; never write, never
                      ``credentials.>`` nor the ``users`` bucket
anonymous             refused
====================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bus import names


class Role(StrEnum):
    """A NATS identity; its value is the NATS user name."""

    RUNTIME = "runtime"
    EXPERIENCE = "experience"
    ADMIN = "admin"
    INSPECTOR = "inspector"


@dataclass(frozen=True)
class Permissions:
    """nats-server's permission block for one user."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()
    inbox_prefix: str = field(default=names.DEFAULT_INBOX_PREFIX)

    def to_config(self) -> dict[str, Any]:
        """The ``permissions`` map of nats-server's configuration."""
        config: dict[str, Any] = {
            "publish": _rule(self.publish, self.publish_deny),
            "subscribe": _rule(self.subscribe, self.subscribe_deny),
        }
        return config


def _rule(allow: tuple[str, ...], deny: tuple[str, ...]) -> dict[str, list[str]]:
    rule = {"allow": list(allow)}
    if deny:
        rule["deny"] = list(deny)
    return rule


def _api(*parts: str) -> str:
    return ".".join((names.JS_API, *parts))


def _kv_write(bucket: str) -> str:
    return names.kv_key_subject(bucket)


# The streams the runtime owns, and the ones each reader may look into.
RUNTIME_BUCKETS = (
    names.SESSIONS_BUCKET,
    names.SESSIONS_BY_USER_BUCKET,
    names.USERS_BUCKET,
    names.LOGIN_ATTEMPTS_BUCKET,
    names.IDEMPOTENCY_BUCKET,
    names.IDENTITIES_BUCKET,
    names.HANDOVERS_BUCKET,
)
RUNTIME_STREAMS = (
    names.INTENTS_STREAM,
    names.AGENT_WORK_STREAM,
    *(names.kv_stream(bucket) for bucket in RUNTIME_BUCKETS),
)
# What an inspector may read: the audit log and sessions, never users (password hashes), login
# attempts or idempotency records. AGENT_WORK only by info: a consumer on a work queue takes work.
INSPECTED_STREAMS = (
    names.INTENTS_STREAM,
    names.kv_stream(names.SESSIONS_BUCKET),
    names.kv_stream(names.SESSIONS_BY_USER_BUCKET),
)


def _owner_api(stream: str) -> list[str]:
    """Every JetStream call the runtime makes on a stream it owns (no delete, no purge)."""
    return [
        _api("STREAM", "CREATE", stream),
        _api("STREAM", "UPDATE", stream),
        _api("STREAM", "INFO", stream),
        _api("STREAM", "MSG", "GET", stream),
        _api("DIRECT", "GET", stream),
        _api("DIRECT", "GET", stream, ">"),
        *_consumer_api(stream, durable=True),
    ]


def _consumer_api(stream: str, *, durable: bool = False) -> list[str]:
    """Creating, reading from and removing consumers of ``stream`` (ephemeral unless durable)."""
    calls = [
        _api("CONSUMER", "CREATE", stream),
        _api("CONSUMER", "CREATE", stream, ">"),
        _api("CONSUMER", "INFO", stream, "*"),
        _api("CONSUMER", "MSG", "NEXT", stream, "*"),
        _api("CONSUMER", "DELETE", stream, "*"),
        f"{names.JS_FLOW_CONTROL}.{stream}.>",
    ]
    if durable:
        calls.append(_api("CONSUMER", "DURABLE", "CREATE", stream, "*"))
    return calls


def _reader_api(stream: str) -> list[str]:
    """Reading a stream: info, single messages, ephemeral consumers acknowledging what they read."""
    return [
        _api("STREAM", "INFO", stream),
        _api("STREAM", "MSG", "GET", stream),
        _api("DIRECT", "GET", stream),
        _api("DIRECT", "GET", stream, ">"),
        *_consumer_api(stream),
        _api("CONSUMER", "NAMES", stream),
        _api("CONSUMER", "LIST", stream),
        f"{names.JS_ACK}.{stream}.>",
    ]


# Intents by who sends them. Every subject in ``names`` that the runtime serves is in one list.
EXPERIENCE_SENDS = (
    names.USER_AUTHENTICATE,
    names.SESSION_CREATE,
    names.SESSION_VERIFY,
    names.SESSION_GET,
    names.SESSION_LIST,
    names.SESSION_REFRESH,
    names.SESSION_REVOKE,
    names.SESSION_REVOKE_ALL,
    names.IDENTITY_AUTHENTICATE,
    names.HANDOVER_STORE,
    names.HANDOVER_TAKE,
    names.SYSTEM_PING,
    names.AGENT_RUN,
    names.AGENT_CANCEL,
)
ADMIN_SENDS = (
    names.USER_CREATE,
    names.USER_PASSWD,
    names.USER_LIST,
    names.USER_REMOVE,
    names.SESSION_LIST,
    names.SESSION_REVOKE,
    names.SYSTEM_PING,
)
INSPECTOR_SENDS = (names.SYSTEM_PING,)

# What no role but the runtime may ever do, whatever its allows say.
RUNTIME_ONLY_PUBLISH = (
    "$KV.>",
    names.AUDIT_ALL,
    f"{names.AGENT_REPLIES_PREFIX}.>",
    _api("STREAM", "CREATE", ">"),
    _api("STREAM", "UPDATE", ">"),
    _api("STREAM", "DELETE", ">"),
    _api("STREAM", "PURGE", ">"),
    _api("STREAM", "MSG", "DELETE", ">"),
    # The users bucket holds password hashes: only the runtime reads it, in any way.
    _api("*", "*", names.kv_stream(names.USERS_BUCKET)),
    _api("*", "*", names.kv_stream(names.USERS_BUCKET), ">"),
    _api("*", "*", "*", names.kv_stream(names.USERS_BUCKET)),
    _api("*", "*", "*", names.kv_stream(names.USERS_BUCKET), ">"),
)
SERVED_BY_RUNTIME = ("intents.>", "credentials.>")


def _others_inboxes(role: Role) -> tuple[str, ...]:
    """Subscriptions on another role's reply inboxes."""
    return tuple(f"{names.role_inbox_prefix(r)}.>" for r in Role if r is not role)


PERMISSIONS: Mapping[Role, Permissions] = {
    Role.RUNTIME: Permissions(
        publish=(
            _api("INFO"),
            _api("STREAM", "NAMES"),
            *(call for stream in RUNTIME_STREAMS for call in _owner_api(stream)),
            *(_kv_write(bucket) for bucket in RUNTIME_BUCKETS),
            f"{names.JS_ACK}.{names.AGENT_WORK_STREAM}.>",
            names.AUDIT_ALL,
            f"{names.AGENT_REPLIES_PREFIX}.>",
            # A starting worker pings until the bus delivers its intents.
            names.SYSTEM_PING,
            # Replies, to every role's inbox. Not nats-server's response permission: that one is
            # per connection, so a reply finished after the runtime reconnected (a NATS restart)
            # would be refused and its caller left to time out.
            *(f"{names.role_inbox_prefix(r)}.>" for r in (Role.EXPERIENCE, Role.ADMIN)),
            f"{names.role_inbox_prefix(Role.RUNTIME)}.>",  # its own start-up ping
            f"{names.DEFAULT_INBOX_PREFIX}.>",
        ),
        subscribe=(
            *(f"{subject} {names.RUNTIME_QUEUE}" for subject in SERVED_BY_RUNTIME),
            f"{names.role_inbox_prefix(Role.RUNTIME)}.>",
            # Every worker hears every cancellation: the run may be any worker's.
            names.AGENT_CANCEL,
            # ``nats micro``: every worker answers for itself (no queue group).
            *names.service_subjects(names.RUNTIME_SERVICE),
        ),
        subscribe_deny=_others_inboxes(Role.RUNTIME),
        inbox_prefix=names.role_inbox_prefix(Role.RUNTIME),
    ),
    Role.EXPERIENCE: Permissions(
        publish=(
            *EXPERIENCE_SENDS,
            # The sessions watch: an ordered consumer on the sessions bucket, found by subject.
            _api("STREAM", "NAMES"),
            *_consumer_api(names.kv_stream(names.SESSIONS_BUCKET)),
        ),
        publish_deny=RUNTIME_ONLY_PUBLISH,
        subscribe=(
            f"{names.role_inbox_prefix(Role.EXPERIENCE)}.>",
            f"{names.AGENT_REPLIES_PREFIX}.>",
        ),
        subscribe_deny=(*SERVED_BY_RUNTIME, *_others_inboxes(Role.EXPERIENCE)),
        inbox_prefix=names.role_inbox_prefix(Role.EXPERIENCE),
    ),
    Role.ADMIN: Permissions(
        publish=ADMIN_SENDS,
        publish_deny=RUNTIME_ONLY_PUBLISH,
        subscribe=(f"{names.role_inbox_prefix(Role.ADMIN)}.>",),
        subscribe_deny=(*SERVED_BY_RUNTIME, *_others_inboxes(Role.ADMIN)),
        inbox_prefix=names.role_inbox_prefix(Role.ADMIN),
    ),
    Role.INSPECTOR: Permissions(
        publish=(
            *INSPECTOR_SENDS,
            names.SERVICE_API_ALL,
            _api("INFO"),
            _api("STREAM", "NAMES"),
            _api("STREAM", "LIST"),
            *(call for stream in INSPECTED_STREAMS for call in _reader_api(stream)),
            _api("STREAM", "INFO", names.AGENT_WORK_STREAM),
            _api("CONSUMER", "INFO", names.AGENT_WORK_STREAM, "*"),
            _api("CONSUMER", "NAMES", names.AGENT_WORK_STREAM),
            _api("CONSUMER", "LIST", names.AGENT_WORK_STREAM),
        ),
        publish_deny=RUNTIME_ONLY_PUBLISH,
        subscribe=(
            f"{names.DEFAULT_INBOX_PREFIX}.>",
            names.INTENTS_ALL,
            names.AUDIT_ALL,
        ),
        subscribe_deny=(
            "credentials.>",
            f"{names.AGENT_REPLIES_PREFIX}.>",
            *_others_inboxes(Role.INSPECTOR),
        ),
    ),
}


def authorization(
    passwords: Mapping[Role, str], extra_users: Iterable[dict[str, Any]] = ()
) -> dict[str, Any]:
    """nats-server's ``authorization`` block: one user per role, nobody anonymous."""
    users = [
        {"user": r.value, "password": passwords[r], "permissions": PERMISSIONS[r].to_config()}
        for r in Role
    ]
    return {"users": [*users, *extra_users]}
