"""``ListSessions`` for one user while other users hold many sessions, against ``GetSession``.

``GET /api/sessions`` (the web client asks on every page open) and "log out everywhere else" both
find a user's sessions. This measures how that cost grows with the sessions of *other* users in
the bucket, with one ``GetSession`` round trip in the same run as the baseline.
Run: ``.venv/bin/python bench/list_sessions.py [--n 200] [--crowds 0,2000,10000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

from harness import running_system, timed
from nats.aio.client import Client

from intents import (
    CreateSession,
    CreateSessionReply,
    CreateUser,
    CreateUserReply,
    GetSession,
    ListSessions,
    ListSessionsReply,
)
from intents.request import ask

USER_SESSIONS = 3
CREATE_CONCURRENCY = 32
WARMUP = 20


async def new_user(nc: Client, name: str) -> str:
    reply = await ask(nc, CreateUser(username=name, password="pw"), 10)  # type: ignore[arg-type]
    assert isinstance(reply, CreateUserReply)
    return reply.user.id


async def open_sessions(nc: Client, user_id: str, username: str, count: int) -> None:
    """``count`` sessions for the user, a few requests at a time."""
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one() -> None:
        async with gate:
            reply = await ask(nc, CreateSession(user_id=user_id, username=username), 30)
            assert isinstance(reply, CreateSessionReply)

    await asyncio.gather(*(one() for _ in range(count)))


async def main(n: int, crowds: list[int]) -> None:
    async with running_system() as system:
        nc = system.nc
        alice = await new_user(nc, "alice")
        await open_sessions(nc, alice, "alice", USER_SESSIONS)
        listed = await ask(nc, ListSessions(user_id=alice), 10)
        assert isinstance(listed, ListSessionsReply)
        assert len(listed.sessions) == USER_SESSIONS
        one_id = listed.sessions[0].session_id
        crowd_id = await new_user(nc, "crowd")
        in_bucket = 0
        print(f"alice holds {USER_SESSIONS} sessions; median of {n} sequential requests each")
        print(f"{'other sessions':>15} {'GetSession':>12} {'ListSessions':>14} {'ratio':>7}")
        for crowd in crowds:
            await open_sessions(nc, crowd_id, "crowd", crowd - in_bucket)
            in_bucket = crowd

            async def get() -> None:
                await ask(nc, GetSession(session_id=one_id, user_id=alice), 30)

            async def list_() -> None:
                reply = await ask(nc, ListSessions(user_id=alice), 30)
                assert isinstance(reply, ListSessionsReply)
                assert len(reply.sessions) == USER_SESSIONS

            # Interleave two rounds of each so drift hits both alike.
            gets, lists = [], []
            for _ in range(2):
                gets += await timed(get, n // 2, warmup=WARMUP, scale=1e3)
                lists += await timed(list_, n // 2, warmup=WARMUP, scale=1e3)
            g, li = statistics.median(gets), statistics.median(lists)
            print(f"{crowd:>15,} {g:>9.2f} ms {li:>11.2f} ms {li / g:>6.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--crowds", default="0,2000,10000")
    args = parser.parse_args()
    crowds = sorted(int(c) for c in args.crowds.split(","))
    if args.n < 2 or any(c < 0 for c in crowds):
        sys.exit("--n must be at least 2 and crowds not negative")
    asyncio.run(main(args.n, crowds))
