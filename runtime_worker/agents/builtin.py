"""The agents every worker ships with: ``echo`` and ``session``."""

from __future__ import annotations

from typing import Any

from intents import InvalidIntent
from runtime_worker.agents.base import Agent, AgentContext
from runtime_worker.sessions import effective

SESSION_FIELDS = frozenset(
    {
        "session_id",
        "user_id",
        "username",
        "state",
        "created_at",
        "last_seen_at",
        "expires_at",
        "absolute_expires_at",
    }
)


async def echo(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
    """One event ``{"item": x}`` per element of ``payload["items"]``, then the payload back."""
    items = payload.get("items")
    if items is not None:
        if not isinstance(items, list):
            raise InvalidIntent("payload.items must be a list")
        for item in items:
            await ctx.emit({"item": item})
    return payload


async def session(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
    """The caller's own session as the store holds it now."""
    stored, _ = await ctx.sessions.require(ctx.intent.session_id)
    return effective(stored, ctx.now).model_dump(mode="json", include=set(SESSION_FIELDS))


def builtin_agents() -> dict[str, Agent]:
    """The built-in agents by name (a fresh dict: callers may add their own)."""
    return {"echo": echo, "session": session}
