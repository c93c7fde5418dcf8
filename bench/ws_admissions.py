"""WebSocket admissions per second at 32 concurrent connect-then-close loops, vs a bare app.

Ours: the real ``symphainy up`` (bench/ws_harness.py): Host/Origin checks, the token, then a
``VerifySession`` request-reply to the runtime, then the socket's registry entry and tasks. The
floor: a bare FastAPI + uvicorn app (h11, wsproto, same bind) admitting on JWT verification
alone, with the same key and tokens. Each loop holds one session's token (created once over
HTTP; login is argon2 and not what is measured) and repeats: handshake, close, check the close
code is the echo of ours (1000; a refusal would come first with 4xxx). The client offers
permessage-deflate, as browsers do. Rounds alternate, median of the rates.
The one setting changed: ``ws_max_per_user`` (32 by default) is raised, since 32 loops of one
user can briefly overlap their previous socket's teardown.
Run: ``.venv/bin/python bench/ws_admissions.py [--n 3000] [--repeats 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import ws_harness

LOOPS = 32
GOAL = 0.7


async def _round(address: tuple[str, int], tokens: list[str], n: int) -> tuple[float, float]:
    """(admissions per second, client CPU µs per admission) for ``n`` connect-then-close
    cycles over ``len(tokens)`` loops."""
    left = n

    async def loop(token: str) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            sock = await ws_harness.open_socket(address, token, deflate=True)
            code = await sock.close()
            if code != 1000:
                raise RuntimeError(f"socket refused with {code}")

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop(t) for t in tokens))
    return n / (time.perf_counter() - started), (time.process_time() - cpu) / n * 1e6


async def main(n: int, repeats: int) -> None:
    env = {"SYMPHAINY_WS_MAX_PER_USER": str(LOOPS * 4)}
    async with ws_harness.stack(env) as stack:
        login = await ws_harness.login_admin(stack, stack.up.url)
        tokens = await ws_harness.new_sessions(stack.up.url, login["session_token"], LOOPS)
        bare = await stack.start_bare()
        try:
            await _round(stack.up.address, tokens, LOOPS * 4)  # warm-up
            await _round(bare.address, tokens, LOOPS * 4)
            ours, floor = [], []
            for r in range(repeats):
                rate, ours_cpu = await _round(stack.up.address, tokens, n)
                ours.append(rate)
                rate, floor_cpu = await _round(bare.address, tokens, n)
                floor.append(rate)
                print(
                    f"round {r + 1}: ours {ours[-1]:,.0f}/s, bare {floor[-1]:,.0f}/s "
                    f"(client CPU per admission {ours_cpu:.0f} / {floor_cpu:.0f} µs)",
                    flush=True,
                )
        finally:
            await bare.stop()
    ours_rate, floor_rate = statistics.median(ours), statistics.median(floor)
    ratio = ours_rate / floor_rate
    print(f"WebSocket admissions, {LOOPS} concurrent loops, {n} per round x {repeats} (median)")
    print(f"symphainy up (token + VerifySession)  {ours_rate:8,.0f} admissions/s")
    print(f"bare FastAPI + uvicorn (JWT only)     {floor_rate:8,.0f} admissions/s")
    print(f"ratio {ratio:.2f}")
    print(ws_harness.result_line("ws_admissions", ratio, ">=", GOAL))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1,000 admissions a round")
    args = parser.parse_args()
    asyncio.run(main(1000 if args.quick else args.n, args.repeats))
