"""``RevokeUserSessions`` of 1,000 sessions of one user, each with one open socket: time from
sending the intent until the last socket is closed with 4404, vs 1,000 KV puts at 64 in flight.

Ours: the real ``symphainy up`` (bench/ws_harness.py). Each round creates a user (as the admin
does), stores its N sessions with the runtime's own store class as the ``runtime`` identity (the
records and user index exactly as ``CreateSession`` writes them, without its eviction pass,
which reads every session of the user: N creates would cost N^2/2 reads with the cap raised to
N), issues each a token with the Experience Plane's ``Tokens``, opens one socket per session
(admitted through the gate's real ``VerifySession``: each answers a ping), then sends
``RevokeUserSessions`` as the Experience Plane sends it, on the bus as the ``experience``
identity, and waits for every socket's close frame. The runtime writes each session revoked; the
gate's watch on the sessions bucket sees each write and closes the session's socket. The floor,
on the same nats-server: N puts of a value the size of a session record into a bucket
configured as the sessions bucket, 64 in flight, by the ``bench`` user. Rounds alternate,
median of the totals. The setting changed: ``ws_max_per_user`` raised above N.
Run: ``.venv/bin/python bench/revocation_latency.py [--n 1000] [--repeats 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import harness
import jwt
import ws_harness
from nats.aio.client import Client
from pydantic import SecretStr

from bus import names
from bus.connection import connect
from bus.permissions import Role
from bus.settings import Settings
from bus.state import bucket_configs
from experience import keys
from experience.tokens import Tokens
from intents import (
    CreateUser,
    CreateUserReply,
    RevokeUserSessions,
    RevokeUserSessionsReply,
    SessionInfo,
    SessionState,
    new_id,
    utcnow,
)
from intents.request import request
from runtime_worker.kv import NatsBucket
from runtime_worker.store import SessionStore

GOAL = 1.2
FLOOR_IN_FLIGHT = 64
FLOOR_BUCKET = "bench_floor"
SESSIONS_BUCKET_CONFIG = 0  # bucket_configs lists the sessions bucket first


@dataclasses.dataclass
class Processes:
    """The processes whose CPU a round spends, by role: up's own, its workers', the bus's, ours."""

    pids: dict[str, list[int]]

    @classmethod
    def of(cls, up_pid: int) -> Processes:
        """``up`` (the Experience Plane and gate), its worker children, nats-server, this client."""
        workers = [
            p for p in harness.descendants(up_pid) if harness.command_name(p) != "nats-server"
        ]
        nats = [
            p for p in harness.descendants(os.getpid()) if harness.command_name(p) == "nats-server"
        ]
        return cls(
            {"up": [up_pid], "worker": workers, "nats-server": nats, "client": [os.getpid()]}
        )

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far, per role."""
        return {role: sum(harness.cpu_seconds(p) for p in pids) for role, pids in self.pids.items()}


@contextmanager
def spent(procs: Processes, into: dict[str, list[float]]) -> Iterator[None]:
    """Append to ``into`` the CPU ms each role spent in the block."""
    before = procs.cpu()
    yield
    for role, seconds in procs.cpu().items():
        into.setdefault(role, []).append((seconds - before[role]) * 1e3)


@contextmanager
def py_spy(procs: Processes, out: Path | None, r: int) -> Iterator[None]:
    """With ``out``, py-spy samples up and its worker during the block (raw folded stacks)."""
    if out is None:
        yield
        return
    spy = Path(sys.executable).parent / "py-spy"
    targets = {"up": procs.pids["up"][0], "worker": procs.pids["worker"][0]}
    running = [
        subprocess.Popen(
            [
                str(spy),
                "record",
                "--nonblocking",
                "-r",
                "1000",
                "-f",
                "raw",
                "-p",
                str(pid),
                "-o",
                str(out / f"{name}-round{r + 1}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in targets.items()
    ]
    time.sleep(1.0)  # attached before the round starts
    try:
        yield
    finally:
        for proc in running:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)


@dataclasses.dataclass
class Clients:
    """The bus connections of the benchmark, one per identity it acts as."""

    admin: Client
    runtime: Client
    experience: Client
    bench: Client


async def _seed(
    clients: Clients, settings: Settings, username: str, n: int
) -> tuple[str, list[str]]:
    """A new user with ``n`` active sessions: (user id, a token per session)."""
    created = await request(
        clients.admin,
        CreateUser(username=username, password=SecretStr(secrets.token_urlsafe(18))),
        CreateUserReply,
        30,
    )
    user_id = created.user.id
    js = clients.runtime.jetstream()
    store = SessionStore(
        NatsBucket(await js.key_value(names.SESSIONS_BUCKET)),
        NatsBucket(await js.key_value(names.SESSIONS_BY_USER_BUCKET)),
    )
    tokens = Tokens.from_settings(settings)
    now = utcnow()
    lifetime = timedelta(seconds=settings.session_max_lifetime_s)
    idle = timedelta(seconds=settings.session_idle_timeout_s)
    gate = asyncio.Semaphore(FLOOR_IN_FLIGHT)

    async def one() -> str:
        session = SessionInfo(
            session_id=new_id(),
            user_id=user_id,
            username=username,
            state=SessionState.ACTIVE,
            created_at=now,
            last_seen_at=now,
            expires_at=now + min(idle, lifetime),
            absolute_expires_at=now + lifetime,
            jti=new_id(),
        )
        async with gate:
            await store.create(session)
        issued = tokens.issue(
            user_id, session.session_id, session.absolute_expires_at, jti=session.jti
        )
        return issued.token

    return user_id, list(await asyncio.gather(*(one() for _ in range(n))))


async def _revoke_round(
    stack: ws_harness.Stack,
    clients: Clients,
    settings: Settings,
    n: int,
    r: int,
    cpu: dict[str, list[float]],
    profile: Path | None,
) -> tuple[float, float]:
    """(ms until the last socket closed, ms until the intent's reply) for one round; the CPU
    each process spent from the intent to the last close goes into ``cpu``."""
    user_id, tokens = await _seed(clients, settings, f"revoked{r}", n)
    sockets = await ws_harness.open_many(stack.up.address, tokens, n, deflate=True)
    procs = Processes.of(stack.up.pid)
    with py_spy(procs, profile, r), spent(procs, cpu):
        started = time.perf_counter()
        reply = await request(
            clients.experience,
            RevokeUserSessions(user_id=user_id, reason="bench"),
            RevokeUserSessionsReply,
            60,
        )
        replied = time.perf_counter()
        codes = await asyncio.wait_for(asyncio.gather(*(s.closed for s in sockets)), 60)
    if len(reply.revoked) != n or set(reply.revoked) != set(_session_ids(tokens)):
        raise RuntimeError(f"revoked {len(reply.revoked)} of {n}, not exactly the user's sessions")
    if set(codes) != {4404}:
        raise RuntimeError(f"close codes {set(codes)}")
    last = max(s.closed_at for s in sockets)
    return (last - started) * 1e3, (replied - started) * 1e3


def _session_ids(tokens: list[str]) -> list[str]:
    """The session id each token names (its ``sid`` claim; read, not verified)."""
    return [str(jwt.decode(t, options={"verify_signature": False})["sid"]) for t in tokens]


async def _floor_round(nc: Client, n: int, value: bytes) -> float:
    """ms for ``n`` KV puts, ``FLOOR_IN_FLIGHT`` at a time."""
    kv = await nc.jetstream().key_value(FLOOR_BUCKET)
    gate = asyncio.Semaphore(FLOOR_IN_FLIGHT)

    async def put(i: int) -> None:
        async with gate:
            await kv.put(f"s{i}", value)

    started = time.perf_counter()
    await asyncio.gather(*(put(i) for i in range(n)))
    return (time.perf_counter() - started) * 1e3


async def main(n: int, repeats: int, profile: Path | None) -> None:
    env = {"SYMPHAINY_WS_MAX_PER_USER": str(n + 10)}
    async with ws_harness.stack(env) as stack:
        settings = keys.resolve(Settings(data_dir=stack.data_dir))
        clients = Clients(
            admin=await connect(stack.roles[Role.ADMIN], "bench-admin"),
            runtime=await connect(stack.roles[Role.RUNTIME], "bench-seed"),
            experience=await connect(stack.roles[Role.EXPERIENCE], "bench-revoke"),
            bench=await connect(stack.bench, "bench-floor"),
        )
        try:
            js = clients.bench.jetstream()
            sessions = bucket_configs(settings)[SESSIONS_BUCKET_CONFIG]
            await js.create_key_value(dataclasses.replace(sessions, bucket=FLOOR_BUCKET))
            value = b"x" * await _record_size(clients, settings)
            ours, replies, floor = [], [], []
            cpu_ours: dict[str, list[float]] = {}
            cpu_floor: dict[str, list[float]] = {}
            for r in range(repeats):
                last, replied = await _revoke_round(
                    stack, clients, settings, n, r, cpu_ours, profile
                )
                ours.append(last)
                replies.append(replied)
                with spent(Processes.of(stack.up.pid), cpu_floor):
                    floor.append(await _floor_round(clients.bench, n, value))
                print(
                    f"round {r + 1}: last socket closed {last:.0f} ms (reply {replied:.0f} ms), "
                    f"{n} KV puts {floor[-1]:.0f} ms",
                    flush=True,
                )
        finally:
            for nc in (clients.admin, clients.runtime, clients.experience, clients.bench):
                await nc.close()
    ours_ms, floor_ms = statistics.median(ours), statistics.median(floor)
    print(f"RevokeUserSessions of {n} sessions with a socket each, median of {repeats} rounds")
    print(f"intent sent -> last socket closed 4404   {ours_ms:8.0f} ms")
    print(f"intent sent -> reply                     {statistics.median(replies):8.0f} ms")
    print(f"floor: {n} KV puts ({len(value)} B), {FLOOR_IN_FLIGHT} in flight  {floor_ms:8.0f} ms")
    print("CPU ms per process (median): revocation (intent -> last close) | floor")
    for role in cpu_ours:
        ours_cpu, floor_cpu = statistics.median(cpu_ours[role]), statistics.median(cpu_floor[role])
        print(f"  {role:<12} {ours_cpu:8.0f} | {floor_cpu:6.0f}")
    print(f"ratio {ours_ms / floor_ms:.2f}")
    print(ws_harness.result_line("revocation_latency", ours_ms / floor_ms, "<=", GOAL))


async def _record_size(clients: Clients, settings: Settings) -> int:
    """Bytes of one stored session record (of a seeded one-session user)."""
    user_id, _ = await _seed(clients, settings, "sizer", 1)
    js = clients.bench.jetstream()
    index = await js.key_value(names.SESSIONS_BY_USER_BUCKET)
    (key,) = [k for k in await index.keys() if k.startswith(f"{user_id}.")]
    entry = await (await js.key_value(names.SESSIONS_BUCKET)).get(key.rsplit(".", 1)[-1])
    if entry.value is None:
        raise RuntimeError("the seeded session was not stored")
    return len(entry.value)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the same 1,000, two rounds")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy up and its worker during each revocation (folded stacks into DIR)",
    )
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.n, 2 if args.quick else args.repeats, args.profile))
