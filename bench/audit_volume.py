"""How much audit history the ``INTENTS`` stream holds at a sustained 1,000 ``VerifySession``/s.

One real worker (``symphainy runtime``) on an embedded nats-server with authorization. Load is
paced (every 10 ms, a tick's share) from the ``experience`` role, in two phases of N seconds:

- ``verifies``: 1,000 ``VerifySession``/s, of which 1 in 1,000 fails (an unknown session, as
  a stale tab's would);
- ``mix``: the same plus 1 ``CreateSession`` per 100 verifies (a login, a fresh user each).

For each phase: bytes and records added to ``INTENTS`` (``stream_info`` before and after), per
second, scaled to exactly 1,000 verifies/s when the pace fell short; history held is the
stream's ``max_bytes`` over that rate, against its ``max_age`` (both read from the stream's
configuration, made from ``bus/settings.py``). The figure: held / max age for ``mix``.
Goal: at least 1 (the byte cap never cuts history shorter than the configured age).
Run: ``.venv/bin/python bench/audit_volume.py [--seconds 15] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import Wire, encode, result, runtime, secured_nats, send, verify_wires
from nats.aio.client import Client

from bus.connection import connect
from bus.names import INTENTS_STREAM
from bus.permissions import Role
from intents import CreateSession, VerifySession
from intents.base import new_id

VERIFIES_PER_S = 1000
CREATE_EVERY = 100
FAIL_EVERY = 1000
SESSIONS = 64
TICK_S = 0.01
MAX_IN_FLIGHT = 512


@dataclass
class Phase:
    """What one phase of load added to the stream."""

    name: str
    verifies_per_s: float
    bytes_per_s: float
    records_per_s: float

    @property
    def at_goal_rate(self) -> float:
        """Bytes per second scaled to exactly ``VERIFIES_PER_S``."""
        return self.bytes_per_s * VERIFIES_PER_S / self.verifies_per_s


def plan(verifies: list[Wire], creates: bool) -> Iterator[tuple[str, Wire | None]]:
    """The intents to send, in order: verifies round-robin, a failure and a create now and then."""
    for k in itertools.count(1):
        if k % FAIL_EVERY == 0:
            yield "fail", encode(VerifySession(session_id=new_id(), user_id=new_id()))
        else:
            yield "verify", verifies[k % len(verifies)]
        if creates and k % CREATE_EVERY == 0:
            yield "create", None


async def one(nc: Client, kind: str, wire: Wire | None) -> None:
    if kind == "create":
        wire = encode(CreateSession(user_id=new_id(), username="login"))
        await send(nc, CreateSession.subject, wire)
        return
    assert wire is not None
    reply = await send(nc, VerifySession.subject, wire, check=kind == "verify")
    if kind == "fail" and json.loads(reply).get("ok") is not False:
        raise RuntimeError("a verify of an unknown session succeeded")


async def sustain(nc: Client, intents: Iterator[tuple[str, Wire | None]], seconds: float) -> float:
    """Send verifies at ``VERIFIES_PER_S`` (and what ``intents`` mixes in) for ``seconds``;
    the verifies per second achieved."""
    per_tick = int(VERIFIES_PER_S * TICK_S)
    room = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()
    verifies = 0

    async def bounded(kind: str, wire: Wire | None) -> None:
        async with room:
            await one(nc, kind, wire)

    began = time.perf_counter()
    due = began
    while due < began + seconds:
        while verifies < per_tick * round((due - began) / TICK_S + 1):
            kind, wire = next(intents)
            verifies += kind != "create"
            task = asyncio.create_task(bounded(kind, wire))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        due += TICK_S
        # Pacing to a rate, not waiting for an event: the next tick is due then.
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
    await asyncio.gather(*tasks)
    return verifies / (time.perf_counter() - began)


async def phase(
    nc: Client, bench: Client, name: str, verifies: list[Wire], seconds: float
) -> Phase:
    js = bench.jetstream()
    before = (await js.stream_info(INTENTS_STREAM)).state
    began = time.perf_counter()
    rate = await sustain(nc, plan(verifies, creates=name == "mix"), seconds)
    after = (await js.stream_info(INTENTS_STREAM)).state
    took = time.perf_counter() - began
    return Phase(
        name, rate, (after.bytes - before.bytes) / took, (after.messages - before.messages) / took
    )


async def measure(data_dir: Path, seconds: float) -> None:
    server, bench_identity, roles = secured_nats(data_dir)
    try:
        with runtime(data_dir):
            bench = await connect(bench_identity, "bench")
            experience = await connect(roles[Role.EXPERIENCE], "bench-experience")
            verifies = await verify_wires(bench, SESSIONS)
            config = (await bench.jetstream().stream_info(INTENTS_STREAM)).config
            phases = [
                await phase(experience, bench, name, verifies, seconds)
                for name in ("verifies", "mix")
            ]
            await experience.close()
            await bench.close()
    finally:
        server.stop()
    assert config.max_bytes is not None
    assert config.max_age is not None
    max_age_d = config.max_age / 86400
    print(f"INTENTS: max_bytes {config.max_bytes / 2**20:.0f} MiB, max_age {max_age_d:g} days")
    print(f"load: {VERIFIES_PER_S} VerifySession/s, 1 in {FAIL_EVERY} failing; mix adds 1 "
          f"CreateSession per {CREATE_EVERY}; {seconds:g} s per phase")  # fmt: skip
    held_of = {}
    for p in phases:
        held = config.max_bytes / p.at_goal_rate if p.at_goal_rate > 0 else math.inf
        held_of[p.name] = held
        print(
            f"{p.name:<9} {p.verifies_per_s:6.0f} verifies/s  {p.records_per_s:6.1f} records/s  "
            f"{p.bytes_per_s:8.0f} B/s ({p.at_goal_rate:8.0f} B/s at 1,000/s)  "
            f"history held {held / 86400:8.2f} days ({held / config.max_age:.3g}x max age)"
        )
    # The goal is the row: a sustained 1,000 verifies/s (with 1 in 1,000 failing). The mix
    # shows what writes cost: they are all audited, so the cap must be sized for them.
    print(f"mix: {held_of['mix'] / config.max_age:.3g}x max age (size the cap for writes)")
    result("audit_history", held_of["verifies"] / config.max_age, ">=", 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--quick", action="store_true", help="6 s per phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure(Path(tmp), 6.0 if args.quick else args.seconds))


if __name__ == "__main__":
    main()
