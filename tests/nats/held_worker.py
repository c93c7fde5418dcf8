"""A runtime worker whose ``hold`` agent never finishes a first attempt.

The redelivery test runs it in its own process and kills it with SIGKILL mid-run:
``python -m tests.nats.held_worker <nats url> <ack wait seconds> <data dir>`` (the data dir
holds the runtime's NATS identity).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from bus.settings import Settings
from runtime_worker.agents import AgentContext, builtin_agents
from runtime_worker.app import start_worker


async def hold(ctx: AgentContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Say who runs it; on a first attempt, then hang until the process dies."""
    await ctx.emit({"worker": ctx.worker_id, "attempt": ctx.attempt})
    if ctx.attempt == 1:
        await asyncio.Event().wait()
    return {"worker": ctx.worker_id, "attempt": ctx.attempt}


async def main(url: str, ack_wait_s: float, data_dir: Path) -> None:
    settings = Settings(
        nats_url=url,
        data_dir=data_dir,
        dev_mode=True,
        agent_ack_wait_s=ack_wait_s,
        _env_file=None,
    )
    await start_worker(settings, worker_id="doomed", agents={**builtin_agents(), "hold": hold})
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])))
