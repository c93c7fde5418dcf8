"""System intents: the runtime's liveness probe."""

from __future__ import annotations

from bus import names
from intents.base import Intent, Reply


class Ping(Intent):
    """Ask any runtime worker to answer; used by readiness checks."""

    subject = names.SYSTEM_PING
    retry_safe = True
    reads_only = True


class PingReply(Reply):
    """The worker that answered."""

    worker_id: str
