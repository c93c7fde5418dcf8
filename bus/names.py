"""Every name that travels on the wire: subjects, streams, buckets, headers, queue groups.

Nothing else in the code base spells these strings out.
"""

from typing import Final

# Subjects: ``intents.<family>.<verb>``.
INTENTS_ALL: Final = "intents.>"

SESSION_CREATE: Final = "intents.session.create"
SESSION_VERIFY: Final = "intents.session.verify"
SESSION_GET: Final = "intents.session.get"
SESSION_LIST: Final = "intents.session.list"
SESSION_REFRESH: Final = "intents.session.refresh"
SESSION_REVOKE: Final = "intents.session.revoke"
SESSION_REVOKE_ALL: Final = "intents.session.revoke_all"

USER_LIST: Final = "intents.user.list"
USER_REMOVE: Final = "intents.user.remove"

# Logins through an OpenID provider: the identity it vouched for becomes a user, and the session
# reaches the browser through a one-time handover code (which travels outside ``intents.>``).
IDENTITY_AUTHENTICATE: Final = "intents.identity.authenticate"
HANDOVER_STORE: Final = "intents.identity.handover"
HANDOVER_TAKE: Final = "credentials.identity.take_handover"

# Intents that carry a password travel outside ``intents.>``, so an operator's
# ``nats sub 'intents.>'`` never shows one; their audit record is redacted like any other.
USER_AUTHENTICATE: Final = "credentials.user.authenticate"
USER_CREATE: Final = "credentials.user.create"
USER_PASSWD: Final = "credentials.user.passwd"

SYSTEM_PING: Final = "intents.system.ping"

# Agent work: captured by a JetStream work-queue stream so it survives a runtime restart.
AGENT_RUN: Final = "intents.agent.run"
AGENT_ALL: Final = "intents.agent.>"
AGENT_WORK_STREAM: Final = "AGENT_WORK"
AGENT_CONSUMER: Final = "agent-runners"
# Cancelling runs whose socket is gone: broadcast to every worker (no queue group: any of them
# may hold the run), and outside ``intents.agent.>`` so that AGENT_WORK does not queue it as work.
AGENT_CANCEL: Final = "intents.agent_run.cancel"
# Events and results of agent work go back to the gate that holds the socket:
# ``agent.replies.<gate id>.<socket id>``.
AGENT_REPLIES_PREFIX: Final = "agent.replies"

# The audit log. The runtime records each intent it executes (secrets redacted, outcome in a
# header) on ``audit.<subject>``. The stream does not capture the request subjects themselves:
# a stream listening on a request subject counts as interest, so NATS would never answer
# "no responders" and a stopped runtime would cost every caller its full timeout.
AUDIT_PREFIX: Final = "audit."
AUDIT_ALL: Final = "audit.>"
OUTCOME_HEADER: Final = "X-Outcome"

# JetStream: the State Surface.
INTENTS_STREAM: Final = "INTENTS"
SESSIONS_BUCKET: Final = "sessions"
# Key ``<user id>.<session id>``: a user's sessions without scanning every session.
SESSIONS_BY_USER_BUCKET: Final = "sessions_by_user"
USERS_BUCKET: Final = "users"
# Login attempts per username (key: a hash of the name), shared by every worker.
LOGIN_ATTEMPTS_BUCKET: Final = "login_attempts"
IDEMPOTENCY_BUCKET: Final = "idempotency"
# External identities: key a hash of (issuer, subject), value the user it maps to.
IDENTITIES_BUCKET: Final = "identities"
# One-time handover codes of OpenID logins (key a hash of the code), gone after a minute.
HANDOVERS_BUCKET: Final = "handovers"

# Queue group shared by every runtime worker.
RUNTIME_QUEUE: Final = "runtime"

# Headers.
CORRELATION_HEADER: Final = "X-Correlation-Id"
INTENT_ID_HEADER: Final = "X-Intent-Id"


def agent_reply_subject(gate_id: str, socket_id: str) -> str:
    """Where the runtime sends the events and result of work submitted on one socket."""
    return f"{AGENT_REPLIES_PREFIX}.{gate_id}.{socket_id}"


def is_agent_reply_subject(subject: str) -> bool:
    """Whether ``subject`` is one socket's reply subject: the runtime answers nowhere else."""
    parts = subject.split(".")
    return (
        len(parts) == 4
        and ".".join(parts[:2]) == AGENT_REPLIES_PREFIX
        and all(part and part not in ("*", ">") for part in parts[2:])
    )


def agent_replies_of_gate(gate_id: str) -> str:
    """The wildcard one gate subscribes to for all of its sockets."""
    return f"{AGENT_REPLIES_PREFIX}.{gate_id}.*"


def kv_stream(bucket: str) -> str:
    """The JetStream stream behind a KV bucket."""
    return f"KV_{bucket}"


def kv_key_subject(bucket: str, key: str = ">") -> str:
    """The subject a KV bucket stores ``key`` under (``>``: every key)."""
    return f"$KV.{bucket}.{key}"


def audit_subject(subject: str) -> str:
    """Where the audit record of an intent sent on ``subject`` goes."""
    return AUDIT_PREFIX + subject


# Reply inboxes. Each role receives replies under a prefix of its own, so no other identity may
# subscribe to them; the inspector keeps NATS's default, which every tool uses unconfigured.
DEFAULT_INBOX_PREFIX: Final = "_INBOX"
# JetStream's API, flow control and acknowledgement subjects, and the service protocol.
JS_API: Final = "$JS.API"
JS_FLOW_CONTROL: Final = "$JS.FC"
JS_ACK: Final = "$JS.ACK"
SERVICE_API_ALL: Final = "$SRV.>"
# The NATS service protocol (``nats micro``): every runtime worker answers PING, INFO and STATS
# as this service, on ``$SRV.<verb>``, ``$SRV.<verb>.<name>`` and ``$SRV.<verb>.<name>.<id>``.
SERVICE_API_PREFIX: Final = "$SRV"
SERVICE_VERBS: Final = ("PING", "INFO", "STATS")
RUNTIME_SERVICE: Final = "symphainy-runtime"


def service_subjects(service: str) -> tuple[str, ...]:
    """The control subjects a service instance answers (its own id as a ``*``)."""
    return tuple(
        subject
        for verb in SERVICE_VERBS
        for subject in (
            f"{SERVICE_API_PREFIX}.{verb}",
            f"{SERVICE_API_PREFIX}.{verb}.{service}",
            f"{SERVICE_API_PREFIX}.{verb}.{service}.*",
        )
    )


def role_inbox_prefix(role: str) -> str:
    """The reply-inbox prefix of a bus role (``_INBOX_<role>``)."""
    return f"{DEFAULT_INBOX_PREFIX}_{role}"
