"""Agent work: an intent frame from a socket, run by the runtime, answered frame by frame.

``RunAgent`` is published to a JetStream work-queue stream (not request-reply), so work that was
accepted survives a runtime restart. The runtime streams ``AgentEvent``s and one final
``AgentResult`` to ``reply_subject``, where the gate holding the socket listens. When that
socket closes (or its session ends) with work in flight, the gate broadcasts ``CancelAgentRun``
and the worker holding the run cancels it; its audit record's outcome is ``cancelled``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from bus import names
from intents.base import ErrorBody, Intent

AgentName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
IntentId = Annotated[str, Field(min_length=1, max_length=64)]

# The audit outcome (``X-Outcome``) of a run cancelled before it finished.
CANCELLED: Final = "cancelled"


class RunAgent(Intent):
    """Run agent ``agent`` on ``payload`` for a live session; answer on ``reply_subject``."""

    subject = names.AGENT_RUN

    session_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    user_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    agent: AgentName
    payload: dict[str, Any] = Field(default_factory=dict)
    client_id: str = Field(min_length=1, max_length=128)
    reply_subject: str = Field(min_length=1, max_length=256)


class CancelAgentRun(Intent):
    """Stop these runs of ``session_id``: nobody is left to read their events.

    Broadcast to every worker, not answered; a worker holding one of the runs cancels it, and
    one that picks up such work later drops it.
    """

    subject = names.AGENT_CANCEL

    session_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    intent_ids: tuple[IntentId, ...] = Field(min_length=1, max_length=1024)
    reason: str = Field(default="socket closed", max_length=200)


class AgentMessage(BaseModel):
    """Base of what the runtime sends back about one ``RunAgent``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    intent_id: str
    client_id: str
    correlation_id: str


class AgentEvent(AgentMessage):
    """Progress of the work; zero or more per intent."""

    kind: Literal["event"] = "event"
    data: dict[str, Any]


class AgentResult(AgentMessage):
    """The end of the work: a result or a typed error, exactly one per intent."""

    kind: Literal["result"] = "result"
    ok: bool
    data: dict[str, Any] | None = None
    error: ErrorBody | None = None


AgentReply = Annotated[AgentEvent | AgentResult, Field(discriminator="kind")]
