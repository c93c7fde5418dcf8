"""What an agent is: a plain async function of a context and a payload, returning its result.

An agent reports progress with ``await ctx.emit({...})`` (each call becomes one ``event`` frame
on the caller's socket) and returns the ``data`` of the final ``result``. It rejects a payload
by raising ``InvalidIntent``; any other error of ours keeps its code, anything else is logged
and answered as a generic internal error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from intents import RunAgent, VerifySessionReply
from runtime_worker.store import SessionStore

Emit = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class AgentContext:
    """What an agent is given besides its payload."""

    intent: RunAgent
    caller: VerifySessionReply
    sessions: SessionStore
    now: datetime
    worker_id: str
    attempt: int
    emit: Emit


Agent = Callable[[AgentContext, dict[str, Any]], Awaitable[dict[str, Any]]]
Agents = Mapping[str, Agent]
