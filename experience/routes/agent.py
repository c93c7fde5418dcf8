"""``/api/runtime/agent``: the WebSocket endpoint; everything happens in the gate."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

router = APIRouter()


@router.websocket("/api/runtime/agent")
async def agent_socket(websocket: WebSocket) -> None:
    """Admit (or reject with a typed close code), then run the agent channel."""
    await websocket.app.state.gate.serve(websocket)
