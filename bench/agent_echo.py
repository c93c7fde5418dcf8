"""Agent ``echo`` over the socket: result latency after the frame is sent, one socket, sequential.

Starts the real ``symphainy up`` (bench/ws_harness.py) and, as the floor for context, a bare
uvicorn + FastAPI socket that answers each frame with a result frame at once; both are driven by
the same client library (``websockets``, offering permessage-deflate as browsers do), in
interleaved rounds, median of the rounds' p50s. Ours also splits into frame -> ack (the intent
stored in the JetStream work stream) and ack -> result (pull consumer, agent, reply subject).
The goal is absolute: p50 at most 3 ms.
Run: ``.venv/bin/python bench/agent_echo.py [--n 1000] [--repeats 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import ws_harness
from websockets.asyncio.client import ClientConnection, connect

GOAL_MS = 3.0
WARMUP = 50


def _socket(url: str, token: str) -> connect:
    return connect(
        url.replace("http://", "ws://") + ws_harness.AGENT_PATH,
        subprotocols=["symphainy.v1", f"bearer.{token}"],  # type: ignore[list-item]
        open_timeout=10,
    )


async def _round(ws: ClientConnection, n: int, tag: str) -> tuple[list[float], list[float]]:
    """``n`` sequential echoes: (ms frame -> result, ms frame -> ack; empty for the floor)."""
    totals, acks = [], []
    for i in range(n + WARMUP):
        frame_id = f"{tag}-{i}"
        frame = {"type": "intent", "id": frame_id, "intent": "echo", "payload": {"n": i}}
        started = time.perf_counter()
        await ws.send(json.dumps(frame))
        acked = None
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("id") != frame_id:
                continue
            if reply["type"] == "ack":
                acked = time.perf_counter()
            elif reply["type"] == "result":
                break
            else:
                raise RuntimeError(f"echo failed: {reply}")
        done = time.perf_counter()
        if i >= WARMUP:
            totals.append((done - started) * 1e3)
            if acked is not None:
                acks.append((acked - started) * 1e3)
    return totals, acks


async def main(n: int, repeats: int) -> None:
    async with ws_harness.stack() as stack:
        token = (await ws_harness.login_admin(stack, stack.up.url))["session_token"]
        bare = await stack.start_bare()
        try:
            async with _socket(stack.up.url, token) as ours, _socket(bare.url, token) as floor:
                ours_p50, ack_p50, floor_p50 = [], [], []
                for r in range(repeats):
                    totals, acks = await _round(ours, n, f"ours{r}")
                    ours_p50.append(statistics.median(totals))
                    ack_p50.append(statistics.median(acks))
                    floor_p50.append(statistics.median((await _round(floor, n, f"bare{r}"))[0]))
                    print(
                        f"round {r + 1}: ours p50 {ours_p50[-1]:.2f} ms "
                        f"(ack {ack_p50[-1]:.2f} ms), bare p50 {floor_p50[-1]:.3f} ms",
                        flush=True,
                    )
        finally:
            await bare.stop()
    ours_ms, ack_ms, floor_ms = (statistics.median(x) for x in (ours_p50, ack_p50, floor_p50))
    print(f"agent echo over the socket, {n} sequential frames x {repeats} rounds (median p50)")
    print(f"symphainy up: frame -> result     p50 {ours_ms:7.2f} ms")
    print(f"              frame -> ack        p50 {ack_ms:7.2f} ms")
    print(f"              ack -> result       p50 {ours_ms - ack_ms:7.2f} ms (approx.)")
    print(f"bare app:     frame -> result     p50 {floor_ms:7.3f} ms  ({ours_ms / floor_ms:.1f}x)")
    print(ws_harness.result_line("agent_echo_p50_ms", ours_ms, "<=", GOAL_MS))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 frames a round")
    args = parser.parse_args()
    asyncio.run(main(200 if args.quick else args.n, args.repeats))
