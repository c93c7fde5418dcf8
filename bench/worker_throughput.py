"""Throughput of one runtime worker under many callers at once, by ``runtime_concurrency``.

Each round keeps ``--callers`` requests in flight for ``--seconds``: ``VerifySession`` (a KV read
per intent) and ``AuthenticateUser`` (an argon2 check in a thread) against one worker, for each
concurrency setting, on the same embedded nats-server. Baseline in the same run: a raw nats-py
echo responder under the same callers.
Run: ``.venv/bin/python bench/worker_throughput.py [--callers 64] [--seconds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from harness import secured_nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from pydantic import SecretStr

from bus.connection import connect
from bus.settings import Settings
from intents import (
    AuthenticateUser,
    CreateSession,
    CreateSessionReply,
    CreateUser,
    CreateUserReply,
    VerifySession,
)
from intents.request import ask
from runtime_worker.app import start_worker

CONCURRENCIES = (1, 64)


async def rate(call: Callable[[int], Awaitable[object]], callers: int, seconds: float) -> float:
    """Completed calls per second with ``callers`` loops calling back to back (``call(i)``)."""
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(i: int) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call(i)
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(callers)))
    return done / (time.perf_counter() - began)


async def echo_rate(nc: Client, callers: int, seconds: float) -> float:
    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data)

    sub = await nc.subscribe("bench.echo", cb=echo)
    try:
        return await rate(lambda _: nc.request("bench.echo", b"{}", timeout=10), callers, seconds)
    finally:
        await sub.unsubscribe()


async def worker_rates(
    nc: Client, url: str, data_dir: Path, concurrency: int, callers: int, seconds: float
) -> tuple[float, float]:
    """(VerifySession, AuthenticateUser) per second against one worker at ``concurrency``."""
    settings = Settings(
        data_dir=data_dir,
        dev_mode=True,
        runtime_concurrency=concurrency,
    )
    worker = await start_worker(settings)
    try:
        # One user per caller, as many people logging in at once would be.
        names = [f"c{concurrency}u{i}" for i in range(callers)]
        verifies_of, logins_of = [], []
        for name in names:
            user = await ask(nc, CreateUser(username=name, password=SecretStr("pw")), 10)
            assert isinstance(user, CreateUserReply)
            made = await ask(nc, CreateSession(user_id=user.user.id, username=name), 10)
            assert isinstance(made, CreateSessionReply)
            verifies_of.append(
                VerifySession(session_id=made.session.session_id, user_id=user.user.id)
            )
            logins_of.append(AuthenticateUser(username=name, password=SecretStr("pw")))
        verifies = await rate(lambda i: ask(nc, verifies_of[i], 10), callers, seconds)
        logins = await rate(lambda i: ask(nc, logins_of[i], 30), callers, seconds)
        return verifies, logins
    finally:
        await worker.stop()


async def main(callers: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server, bench, _ = secured_nats(Path(tmp))
        nc = await connect(bench, "bench")
        try:
            baseline = await echo_rate(nc, callers, seconds)
            print(f"{callers} callers, {seconds:.0f} s per measurement, one worker")
            print(f"{'raw nats-py echo (baseline)':<40} {baseline:8.0f} req/s")
            for concurrency in CONCURRENCIES:
                verifies, logins = await worker_rates(
                    nc, server.url, Path(tmp), concurrency, callers, seconds
                )
                print(
                    f"runtime_concurrency={concurrency:<4} VerifySession {verifies:8.0f} req/s "
                    f"({verifies / baseline:.2f} of echo)   AuthenticateUser {logins:6.1f} req/s"
                )
        finally:
            await nc.close()
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    asyncio.run(main(args.callers, args.seconds))
