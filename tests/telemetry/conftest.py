"""Telemetry tests: the stack fixtures of the WebSocket tier, and a real Prometheus."""

from tests.stack import make_stack, stack
from tests.telemetry.prometheus import prometheus_binary

__all__ = ["make_stack", "prometheus_binary", "stack"]
