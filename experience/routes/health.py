"""``/healthz`` (the process is alive) and ``/readyz`` (NATS is connected and a runtime answers)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from experience.deps import RuntimeDep, SettingsDep
from experience.errors import error_response
from experience.routes.models import error_responses
from intents import Ping, PingReply, SymphainyError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answers as long as the process serves HTTP."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None, responses=error_responses(503))
async def readyz(
    request: Request, runtime: RuntimeDep, settings: SettingsDep
) -> dict[str, str] | JSONResponse:
    """Readiness: NATS connected and a runtime worker answering a ping; 503 otherwise."""
    if not request.app.state.nc.is_connected:
        return error_response(
            503, "nats_unavailable", "not connected to NATS", settings.retry_after_s
        )
    try:
        reply = await runtime.ask(Ping(actor="experience"), PingReply)
    except SymphainyError as exc:
        return error_response(503, exc.code, exc.message, settings.retry_after_s)
    return {"status": "ready", "nats": "connected", "runtime": reply.worker_id}
