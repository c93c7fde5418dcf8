"""Median round trip of ``VerifySession`` against a raw nats-py request to an echo responder.

Both are measured in the same run on the same embedded nats-server (authorization on), so the
ratio holds on a noisy machine. ``VerifySession`` is sent as the Experience Plane sends it, with
the ``experience`` identity; the floor is a client with no permission checks at all.
Run: ``.venv/bin/python bench/verify_roundtrip.py [--n 2000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

from harness import running_system, timed
from nats.aio.msg import Msg

from bus.connection import connect
from bus.permissions import Role
from intents import (
    CreateSession,
    CreateSessionReply,
    CreateUser,
    CreateUserReply,
    VerifySession,
    VerifySessionReply,
)
from intents.request import ask, request


def describe(name: str, samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return (
        f"{name:<28} p50 {statistics.median(samples):8.0f} µs   p99 {cuts[98]:8.0f} µs   "
        f"{len(samples) / (sum(samples) / 1e6):8.0f} req/s"
    )


async def main(n: int) -> None:
    async with running_system() as system:
        nc = system.nc

        async def echo(msg: Msg) -> None:
            await msg.respond(msg.data)

        await nc.subscribe("bench.echo", cb=echo)
        user = await ask(nc, CreateUser(username="bench", password="pw"), 5)  # type: ignore[arg-type]
        assert isinstance(user, CreateUserReply)
        created = await ask(nc, CreateSession(user_id=user.user.id, username="bench"), 5)
        assert isinstance(created, CreateSessionReply)
        verify = VerifySession(session_id=created.session.session_id, user_id=user.user.id)
        payload = verify.to_wire()

        async def raw() -> object:
            return await nc.request("bench.echo", payload, timeout=5)

        experience = await connect(system.roles[Role.EXPERIENCE], "bench-experience")

        async def verify_once() -> object:
            return await request(experience, verify, VerifySessionReply, 5)

        # Interleave rounds so drift on a noisy machine hits both alike.
        raw_samples: list[float] = []
        verify_samples: list[float] = []
        rounds = 4
        for _ in range(rounds):
            raw_samples += await timed(raw, n // rounds, warmup=min(200, n), scale=1e6)
            verify_samples += await timed(verify_once, n // rounds, warmup=min(200, n), scale=1e6)
        print(f"python {sys.version.split()[0]}, {n} sequential requests each")
        print(describe("raw nats-py echo request", raw_samples))
        print(describe("VerifySession round trip", verify_samples))
        ratio = statistics.median(verify_samples) / statistics.median(raw_samples)
        print(f"VerifySession / raw echo (medians): {ratio:.2f}x")
        await experience.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    asyncio.run(main(parser.parse_args().n))
