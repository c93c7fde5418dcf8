"""Does a failed login tell an unknown user from a wrong password? Compare their medians.

Both go through a real runtime worker with the default argon2 cost, interleaved in one run.
Run: ``.venv/bin/python bench/login_timing.py [--n 40]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from harness import running_system
from pydantic import SecretStr

from intents import AuthenticateUser, AuthenticationFailed, CreateUser
from intents.request import ask


async def main(n: int) -> None:
    # Every attempt on one name is counted; lift the limit so all of them reach the password check.
    async with running_system(login_rate_limit=10 * n + 10, login_slowdown_max_s=0) as system:
        nc = system.nc
        await ask(nc, CreateUser(username="alice", password=SecretStr("right password")), 10)

        async def failed_login(username: str) -> float:
            started = time.perf_counter()
            try:
                await ask(nc, AuthenticateUser(username=username, password=SecretStr("wrong")), 10)
            except AuthenticationFailed:
                return (time.perf_counter() - started) * 1e3
            raise AssertionError("the login should have failed")

        await failed_login("nobody")
        wrong, unknown = [], []
        for _ in range(n):
            wrong.append(await failed_login("alice"))
            unknown.append(await failed_login("nobody"))
        print(f"{n} failed logins each, default argon2 cost")
        for name, samples in (("wrong password", wrong), ("unknown user", unknown)):
            print(f"{name:<16} p50 {statistics.median(samples):7.1f} ms")
        ratio = statistics.median(unknown) / statistics.median(wrong)
        print(f"unknown / wrong (medians): {ratio:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40)
    asyncio.run(main(parser.parse_args().n))
