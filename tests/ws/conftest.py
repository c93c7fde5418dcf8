"""WebSocket tier: real sockets against real uvicorn, runtime and NATS."""

from tests.stack import make_stack, stack

__all__ = ["make_stack", "stack"]
