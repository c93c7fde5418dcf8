"""``symphainy up --workers 1`` against ``--workers 2``: ``VerifySession`` throughput through the
real command, with CPU per intent.

Both commands run at once, each in its own data directory with its own embedded NATS; rounds
alternate between them. Load: 64 ``VerifySession`` in flight (one session per caller) sent as
the Experience Plane sends them, with the ``experience`` role's context that ``up`` wrote. CPU
per intent: µs of CPU of ``up`` and every process under it but its nats-server (the workers,
wherever they run), per verify. On this 2-core machine the client, nats-server and the workers
share two cores, so 2 workers cannot show 2x; the figure is workers=2 over workers=1 req/s,
and the goal only that a second worker costs nothing: at least 1.
Run: ``.venv/bin/python bench/workers_scaling.py [--seconds 3] [--rounds 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from harness import (
    SYMPHAINY,
    UP_READY,
    Process,
    command_name,
    descendants,
    free_port,
    median,
    python_tree_cpu_seconds,
    rate,
    result,
    send,
    verify_wires,
)

from bus.connection import connect
from bus.identity import NatsIdentity, context_path
from bus.permissions import Role
from intents import VerifySession

IN_FLIGHT = 64
COUNTS = (1, 2)


def up(work: Path, workers: int) -> Process:
    """``symphainy up --workers N`` in a data directory of its own."""
    data = work / f"workers-{workers}"
    argv = [SYMPHAINY, "up", "--workers", str(workers), "--data-dir", str(data)]
    argv += ["--port", str(free_port()), "--nats-port", str(free_port())]
    return Process(f"up-{workers}", argv, UP_READY, work)


async def measure(work: Path, seconds: float, rounds: int) -> None:
    ups = {n: up(work, n) for n in COUNTS}
    with ups[1], ups[2]:
        for n in COUNTS:
            children = [command_name(p) for p in descendants(ups[n].pid)]
            print(f"symphainy up --workers {n}: processes under it: {', '.join(children)}")
        clients = {
            n: await connect(
                NatsIdentity.from_context(context_path(work / f"workers-{n}", Role.EXPERIENCE)),
                f"bench-{n}",
            )
            for n in COUNTS
        }
        wires = {n: await verify_wires(clients[n], IN_FLIGHT) for n in COUNTS}
        runs: dict[int, list[tuple[float, float]]] = {n: [] for n in COUNTS}
        for i in range(rounds):
            for n in COUNTS:
                nc, verifies = clients[n], wires[n]
                before = python_tree_cpu_seconds(ups[n].pid)
                done, took = await rate(
                    lambda c: send(nc, VerifySession.subject, verifies[c]),  # noqa: B023
                    IN_FLIGHT,
                    seconds,
                )
                cpu_us = (python_tree_cpu_seconds(ups[n].pid) - before) / done * 1e6
                runs[n].append((done / took, cpu_us))
                print(
                    f"round {i + 1}: --workers {n} {done / took:6.0f}/s {cpu_us:4.0f} µs CPU each"
                )
        for nc in clients.values():
            await nc.close()
    print(f"{IN_FLIGHT} VerifySession in flight, {seconds:g} s windows, {rounds} rounds (medians)")
    for n in COUNTS:
        per_s = median([r for r, _ in runs[n]])
        cpu = median([c for _, c in runs[n]])
        print(f"symphainy up --workers {n}: {per_s:6.0f} verifies/s, {cpu:4.0f} µs CPU per verify")
    ratios = [two[0] / one[0] for one, two in zip(runs[1], runs[2], strict=True)]
    print(f"--workers 2 / --workers 1: {median(ratios):.2f}x (2 cores: client, NATS, workers)")
    # The issue asks for the measurement, not a figure. On 2 cores the client, NATS and one
    # worker already share both, so a second worker process cannot add CPU here; it must not
    # cost throughput beyond this machine's noise (0.9). CPU per verify is what predicts scaling
    # across machines (bench/worker_throughput.py).
    result("workers_scaling", median(ratios), ">=", 0.9)


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
