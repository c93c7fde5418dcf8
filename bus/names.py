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

# Intents that carry a password travel outside ``intents.>``, so an operator's
# ``nats sub 'intents.>'`` never shows one; their audit record is redacted like any other.
USER_AUTHENTICATE: Final = "credentials.user.authenticate"
USER_CREATE: Final = "credentials.user.create"

SYSTEM_PING: Final = "intents.system.ping"

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
USERS_BUCKET: Final = "users"
IDEMPOTENCY_BUCKET: Final = "idempotency"

# Queue group shared by every runtime worker.
RUNTIME_QUEUE: Final = "runtime"

# Headers.
CORRELATION_HEADER: Final = "X-Correlation-Id"
INTENT_ID_HEADER: Final = "X-Intent-Id"


def audit_subject(subject: str) -> str:
    """Where the audit record of an intent sent on ``subject`` goes."""
    return AUDIT_PREFIX + subject
