"""Agent work on the runtime side: pluggable agents and the runner that executes them."""

from runtime_worker.agents.base import Agent, AgentContext, Agents, Emit
from runtime_worker.agents.builtin import builtin_agents
from runtime_worker.agents.execute import run_intent
from runtime_worker.agents.runner import AgentRunner

__all__ = ["Agent", "AgentContext", "AgentRunner", "Agents", "Emit", "builtin_agents", "run_intent"]
