"""``VerifySession`` round trip p50 through a real runtime worker, against a raw KV-get floor.

One embedded nats-server with authorization (as ``symphainy up`` runs it), and two processes
on it: ``symphainy runtime`` (the worker, as an operator starts it) and the floor, a raw nats-py
responder that answers each request with one KV get on the ``sessions`` bucket
(``floors.py responder --kv``). ``VerifySession`` is sent as the Experience Plane sends it
(``intents.request.request``, as the ``experience`` role); the floor gets the same bytes and
headers by a plain ``nc.request``. Rounds alternate floor and worker; the figure is the median
of the rounds' p50 ratios. Goal: at most 1.3x.
Run: ``.venv/bin/python bench/verify_roundtrip.py [--n 2000] [--rounds 5] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from harness import floor, median, result, runtime, secured_nats, timed, write_context

from bus.connection import connect
from bus.names import SESSIONS_BUCKET
from bus.permissions import Role
from intents import CreateSession, CreateSessionReply, VerifySession, VerifySessionReply
from intents.base import new_id
from intents.request import ask, intent_headers, request

FLOOR_SUBJECT = "bench.floor.kv"
GOAL = 1.3


async def measure(data_dir: Path, n: int, rounds: int) -> None:
    server, bench, roles = secured_nats(data_dir)
    context = write_context(bench, data_dir / "bench-context.json")
    kv_floor = floor(
        "kv-floor", data_dir, "responder", "--context", str(context),
        "--subject", FLOOR_SUBJECT, "--kv", SESSIONS_BUCKET,
    )  # fmt: skip
    try:
        with runtime(data_dir), kv_floor:
            nc = await connect(bench, "bench")
            experience = await connect(roles[Role.EXPERIENCE], "bench-experience")
            user_id = new_id()
            made = await ask(nc, CreateSession(user_id=user_id, username="bench"), 10)
            assert isinstance(made, CreateSessionReply)
            verify = VerifySession(session_id=made.session.session_id, user_id=user_id)
            wire = verify.with_deadline(3600)
            payload, headers = wire.to_wire(), intent_headers(wire)

            async def raw() -> None:
                reply = await nc.request(FLOOR_SUBJECT, payload, timeout=5, headers=headers)
                assert reply.data, "the floor found no session"

            async def verified() -> None:
                await request(experience, verify, VerifySessionReply, 5)

            floors, verifies, ratios = [], [], []
            for i in range(rounds):
                f = median(await timed(raw, n, warmup=min(200, n), scale=1e6))
                v = median(await timed(verified, n, warmup=min(200, n), scale=1e6))
                floors.append(f)
                verifies.append(v)
                ratios.append(v / f)
                print(f"round {i + 1}: floor p50 {f:6.0f} µs   VerifySession p50 {v:6.0f} µs")
            await experience.close()
            await nc.close()
    finally:
        server.stop()
    print(f"{rounds} rounds of {n} sequential requests each (medians over rounds)")
    print(f"raw nats-py responder, one KV get   p50 {median(floors):6.0f} µs")
    print(f"VerifySession via symphainy runtime p50 {median(verifies):6.0f} µs")
    result("verify_p50", median(ratios), "<=", GOAL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="500 requests x 3 rounds")
    args = parser.parse_args()
    n, rounds = (500, 3) if args.quick else (args.n, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure(Path(tmp), n, rounds))


if __name__ == "__main__":
    main()
