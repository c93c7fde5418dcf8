"""``VerifySession`` throughput at 64 in flight through one real runtime worker, against
task-per-message nats-py responders, with the worker's CPU per intent.

Processes on one embedded nats-server with authorization: ``symphainy runtime`` (one worker),
and two floors (``floors.py responder``, a task per message): a bare echo, the issue's floor
(14,898 req/s when it was filed), and one answering with one KV get on ``sessions``. Each
round measures, back to back, the echo floor, the KV floor, ``VerifySession`` (64 sessions,
one per caller) and ``CreateSession`` (a fresh user each, as new logins). The client sends
pre-encoded intents by plain ``nc.request`` (as the ``experience`` role) and checks every reply
is ``ok``, so the worker, not the client's pydantic, is what is measured.

CPU per intent: µs of the worker process's CPU (``/proc/<pid>/stat`` utime+stime, every
thread) per completed intent in that window; the floors' CPU per message likewise. On 2 cores
this, not adding workers, says how N workers on N machines scale.
The figure: ``VerifySession`` req/s over the bare echo floor's, median of the rounds' ratios.
Goal: at least 0.5x.
Run: ``.venv/bin/python bench/worker_throughput.py [--seconds 3] [--rounds 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from harness import (
    Process,
    cpu_seconds,
    encode,
    floor,
    median,
    rate,
    result,
    runtime,
    secured_nats,
    send,
    verify_wires,
    write_context,
)

from bus.connection import connect
from bus.names import SESSIONS_BUCKET
from bus.permissions import Role
from intents import CreateSession, VerifySession
from intents.base import new_id

IN_FLIGHT = 64
ECHO_SUBJECT = "bench.floor.echo"
KV_SUBJECT = "bench.floor.kv"
GOAL = 0.5


@dataclass
class Window:
    """One measurement: requests per second, and µs of the answering process's CPU per request."""

    per_s: float
    cpu_us: float


async def window(
    process: Process, call: Callable[[int], Awaitable[object]], seconds: float
) -> Window:
    before = cpu_seconds(process.pid)
    done, took = await rate(call, IN_FLIGHT, seconds)
    return Window(done / took, (cpu_seconds(process.pid) - before) / done * 1e6)


async def measure(data_dir: Path, seconds: float, rounds: int) -> None:
    server, bench, roles = secured_nats(data_dir)
    context = str(write_context(bench, data_dir / "bench-context.json"))
    echo = floor(
        "echo-floor", data_dir, "responder", "--context", context, "--subject", ECHO_SUBJECT
    )
    kv = floor(
        "kv-floor", data_dir, "responder", "--context", context,
        "--subject", KV_SUBJECT, "--kv", SESSIONS_BUCKET,
    )  # fmt: skip
    try:
        with runtime(data_dir) as worker, echo, kv:
            nc = await connect(bench, "bench")
            experience = await connect(roles[Role.EXPERIENCE], "bench-experience")
            verifies = await verify_wires(nc, IN_FLIGHT)

            def create(i: int) -> Awaitable[bytes]:
                wire = encode(CreateSession(user_id=new_id(), username=f"new{i}"))
                return send(experience, CreateSession.subject, wire)

            table: dict[str, list[Window]] = {}
            for i in range(rounds):
                measured = {
                    "echo floor": await window(
                        echo, lambda i: send(nc, ECHO_SUBJECT, verifies[i], check=False), seconds
                    ),
                    "KV-get floor": await window(
                        kv, lambda i: send(nc, KV_SUBJECT, verifies[i], check=False), seconds
                    ),
                    "VerifySession": await window(
                        worker, lambda i: send(experience, VerifySession.subject, verifies[i]),
                        seconds,
                    ),
                    "CreateSession": await window(worker, create, seconds),
                }  # fmt: skip
                print(f"round {i + 1}: " + "  ".join(
                    f"{name} {w.per_s:6.0f}/s {w.cpu_us:4.0f} µs" for name, w in measured.items()
                ))  # fmt: skip
                for name, w in measured.items():
                    table.setdefault(name, []).append(w)
            await experience.close()
            await nc.close()
    finally:
        server.stop()
    print(f"{IN_FLIGHT} in flight, {seconds:g} s windows, {rounds} rounds (medians over rounds)")
    print(f"{'':<16}{'req/s':>8}  {'CPU µs/req':>10}  (of the answering process)")
    for name, windows in table.items():
        per_s = median([w.per_s for w in windows])
        print(f"{name:<16}{per_s:8.0f}  {median([w.cpu_us for w in windows]):10.0f}")
    pairs = zip(table["VerifySession"], table["echo floor"], table["KV-get floor"], strict=True)
    ratios = [(v.per_s / e.per_s, v.per_s / k.per_s) for v, e, k in pairs]
    print(f"VerifySession / KV-get floor: {median([r[1] for r in ratios]):.2f}x")
    print(f"VerifySession / echo floor:   {median([r[0] for r in ratios]):.2f}x  (the goal's)")
    result("verify_throughput", median([r[0] for r in ratios]), ">=", GOAL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1.5 s windows x 2 rounds")
    args = parser.parse_args()
    seconds, rounds = (1.5, 2) if args.quick else (args.seconds, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure(Path(tmp), seconds, rounds))


if __name__ == "__main__":
    main()
