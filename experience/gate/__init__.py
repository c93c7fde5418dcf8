"""The WebSocket gate of ``/api/runtime/agent``."""

from experience.gate.gate import Gate
from experience.gate.protocol import CloseCode

__all__ = ["CloseCode", "Gate"]
