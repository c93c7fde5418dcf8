"""``/api/runtime/agent``: the WebSocket endpoint; everything happens in the gate.

``SocketsFirst`` is the server's ASGI entry. A socket on this path goes straight to the gate: the
app's middleware (host check, correlation id, body limit, HTTP metrics) are HTTP's business and
pass sockets through, but each layer's frame stayed alive for the socket's whole life, about
1 KB a socket, and every admission paid for the walk. The gate checks hosts and origins itself.
When the app is traced, sockets go through the app, so its tracing middleware spans each one.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, WebSocket
from starlette.types import Receive, Scope, Send

from telemetry.http import HttpTracing

AGENT_PATH = "/api/runtime/agent"

router = APIRouter()


@router.websocket(AGENT_PATH)
async def agent_socket(websocket: WebSocket) -> None:
    """Admit (or reject with a typed close code), then run the agent channel."""
    await websocket.app.state.gate.serve(websocket)


class SocketsFirst:
    """ASGI entry: agent sockets to the gate directly, everything else to ``app``."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.direct = not any(getattr(m, "cls", None) is HttpTracing for m in app.user_middleware)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.direct and scope["type"] == "websocket" and scope["path"] == AGENT_PATH:
            scope["app"] = self.app
            await self.app.state.gate.serve(WebSocket(scope, receive, send))
            return
        await self.app(scope, receive, send)
