"""Agent work: an intent frame from a socket, run by the runtime, answered frame by frame.

``RunAgent`` is published to a JetStream work-queue stream (not request-reply), so work that was
accepted survives a runtime restart. The runtime streams ``AgentEvent``s and one final
``AgentResult`` to ``reply_subject``, where the gate holding the socket listens.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bus import names
from intents.base import ErrorBody, Intent

AgentName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]


class RunAgent(Intent):
    """Run agent ``agent`` on ``payload`` for a live session; answer on ``reply_subject``."""

    subject = names.AGENT_RUN

    session_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    user_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    agent: AgentName
    payload: dict[str, Any] = Field(default_factory=dict)
    client_id: str = Field(min_length=1, max_length=128)
    reply_subject: str = Field(min_length=1, max_length=256)


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
