"""What tracing costs: ``VerifySession`` round trips on a traced ``symphainy up`` vs a plain one.

Two real ``symphainy up`` processes run side by side, each with its embedded NATS: one with the
standard ``OTEL_*`` variables exporting to an OTLP/HTTP receiver in a process of its own, as a
collector would be (every span really encoded, sent and decoded), one without. Rounds alternate
between them (each going first in every other round) so drift on a noisy machine hits both
alike. Two paths are timed, sequentially:

- ``GET /api/session/{id}`` over HTTP keep-alive: token check, ``VerifySession``, ``GetSession``;
  traced, that is the HTTP span, two client spans, two runtime spans and their KV spans.
- ``VerifySession`` over NATS as the ``experience`` identity (as ``verify_roundtrip.py``): the
  runtime's span and its KV span (this client sends no trace context).

``--metrics-port P`` also serves the traced side's Prometheus metrics on P (once ``up`` has the
flag), so the pair measures metrics and tracing together. The last line is the ratio.
``--control`` traces neither side (the noise floor of comparing two processes).
``--sample R`` traces only that share of requests (the standard ``parentbased_traceidratio``).
Run: ``.venv/bin/python bench/telemetry_overhead.py [--n 4000] [--metrics-port P] [--sample R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness import cpu_seconds, descendants, timed

from bus.connection import connect
from bus.identity import identity_for
from bus.permissions import Role
from bus.settings import Settings
from intents import VerifySession, VerifySessionReply
from intents.request import request
from tests.otlp import OtlpReceiver
from tests.processes import Component, start_component

ROUNDS = 16


@dataclass
class Side:
    """One running ``symphainy up`` and the two calls timed against it."""

    name: str
    component: Component
    http_call: Callable[[], Awaitable[object]]
    verify_call: Callable[[], Awaitable[object]]
    http_samples: list[float]
    verify_samples: list[float]
    # The median of each round, to compare round by round.
    http_rounds: list[float]
    verify_rounds: list[float]
    # CPU seconds its processes (up, its workers, its NATS) spent on each path.
    http_cpu: float = 0.0
    verify_cpu: float = 0.0


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and every process below it."""
    total = 0.0
    for each in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):  # a process gone since listed
            total += cpu_seconds(each)
    return total


@asynccontextmanager
async def running_up(
    name: str, root: Path, env: dict[str, str], extra: list[str]
) -> AsyncIterator[Side]:
    """Start ``symphainy up`` in its own data dir, log in as admin, and yield the timed calls."""
    data_dir = root / name
    up = await start_component(
        name,
        ["up", "--port", "0", "--nats-port", "-1", "--data-dir", str(data_dir), *extra],
        root,
        env,
        re.compile(r"symphainy is up \(NATS \S+\): http://"),
    )
    try:
        found = re.search(r"(http://\S+)", up.announced)
        assert found is not None
        password = (data_dir / "admin-password").read_text().strip()
        async with httpx.AsyncClient(base_url=found.group(1), timeout=10) as http:
            login = await http.post(
                "/api/auth/login", json={"username": "admin", "password": password}
            )
            login.raise_for_status()
            body = login.json()
            path = f"/api/session/{body['session_id']}"
            headers = {"Authorization": f"Bearer {body['session_token']}"}
            settings = Settings(data_dir=data_dir, _env_file=None)
            nc = await connect(identity_for(settings, Role.EXPERIENCE), f"bench-{name}")
            verify = VerifySession(session_id=body["session_id"], user_id=body["user"]["id"])

            async def http_call() -> object:
                response = await http.get(path, headers=headers)
                assert response.status_code == 200, response.text
                return response

            async def verify_call() -> object:
                return await request(nc, verify, VerifySessionReply, 5)

            try:
                yield Side(name, up, http_call, verify_call, [], [], [], [])
            finally:
                await nc.close()
        await up.terminate()
    finally:
        await up.kill()


def describe(name: str, samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return (
        f"{name:<40} p50 {statistics.median(samples):7.0f} µs   p99 {cuts[98]:7.0f} µs   "
        f"{len(samples) / (sum(samples) / 1e6):6.0f} req/s"
    )


def ratio(on: list[float], off: list[float]) -> float:
    return statistics.median(on) / statistics.median(off)


def round_ratio(on: list[float], off: list[float]) -> float:
    """The median over rounds of on/off in the same round: a burst of load from elsewhere hits
    one round, not the figure."""
    return statistics.median(a / b for a, b in zip(on, off, strict=True))


async def serve_otlp() -> None:
    """The receiver process: print its endpoint, collect until stdin closes, print the count."""
    receiver = await OtlpReceiver().start()
    print(receiver.endpoint, flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await receiver.stop()
    print(len(receiver.spans), flush=True)


@asynccontextmanager
async def receiver_process() -> AsyncIterator[tuple[str, list[int]]]:
    """Run ``serve_otlp`` in a child; yield its endpoint and a list that gets the span count."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve-otlp",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    count: list[int] = []
    try:
        endpoint = (await child.stdout.readline()).decode().strip()
        yield endpoint, count
        child.stdin.close()
        count.append(int((await child.stdout.readline()).decode()))
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()


async def main(n: int, metrics_port: int | None, sample: float | None, control: bool) -> None:
    async with receiver_process() as (endpoint, spans):
        ratios = await compare(n, metrics_port, endpoint, sample, control)
    print(f"spans received by the OTLP receiver: {spans[0]:,}")
    print("\n".join(ratios))


async def compare(
    n: int, metrics_port: int | None, endpoint: str, sample: float | None, control: bool
) -> list[str]:
    """Time both sides; print their figures and return the ratio lines."""
    traced_env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    if control:
        traced_env = {"OTEL_SDK_DISABLED": "true"}
    if sample is not None:
        traced_env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        traced_env["OTEL_TRACES_SAMPLER_ARG"] = str(sample)
    plain_env = {"OTEL_SDK_DISABLED": "true"}  # whatever the caller's shell has set
    extra = ["--metrics-port", str(metrics_port)] if metrics_port else []
    per_round, warmup = n // ROUNDS, min(200, n)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        async with (
            running_up("traced", root, traced_env, extra) as on,
            running_up("plain", root, plain_env, []) as off,
        ):
            for round_ in range(ROUNDS):
                # Each side goes first in every other round: whichever goes first runs on a
                # machine the other has just been loading (the control measured a 3% bias).
                for side in (on, off) if round_ % 2 else (off, on):
                    before = tree_cpu(side.component.pid)
                    http = await timed(side.http_call, per_round, warmup=warmup, scale=1e6)
                    between = tree_cpu(side.component.pid)
                    verify = await timed(side.verify_call, per_round, warmup=warmup, scale=1e6)
                    side.http_cpu += between - before
                    side.verify_cpu += tree_cpu(side.component.pid) - between
                    side.http_samples += http
                    side.verify_samples += verify
                    side.http_rounds.append(statistics.median(http))
                    side.verify_rounds.append(statistics.median(verify))
                warmup = 20
    what = "tracing + metrics" if metrics_port else "tracing"
    if control:
        what = "control (off too)"
    if sample is not None:
        what += f" (sampled {sample:g})"
    print(f"python {sys.version.split()[0]}, {n} sequential requests per path and side")
    print(describe("VerifySession over NATS, plain", off.verify_samples))
    print(describe(f"VerifySession over NATS, {what}", on.verify_samples))
    print(describe("GET /api/session/{id}, plain", off.http_samples))
    print(describe(f"GET /api/session/{{id}}, {what}", on.http_samples))
    verify_p50 = ratio(on.verify_samples, off.verify_samples)
    verify_rounds = round_ratio(on.verify_rounds, off.verify_rounds)
    http_p50 = ratio(on.http_samples, off.http_samples)
    http_rounds = round_ratio(on.http_rounds, off.http_rounds)
    # CPU per request (warm-up calls included in the count): load-independent, unlike latency.
    calls = per_round * ROUNDS + warmup * (ROUNDS - 1) + min(200, n)
    for path, on_cpu, off_cpu in (
        ("VerifySession over NATS", on.verify_cpu, off.verify_cpu),
        ("GET /api/session/{id}", on.http_cpu, off.http_cpu),
    ):
        print(
            f"{path}: CPU per request {off_cpu / calls * 1e6:.0f} µs plain, "
            f"{on_cpu / calls * 1e6:.0f} µs {what} ({on_cpu / off_cpu:.3f})"
        )
    return [
        f"VerifySession over NATS, {what} / plain: p50 {verify_p50:.3f}, "
        f"per round {verify_rounds:.3f}",
        f"GET /api/session/{{id}}, {what} / plain: p50 {http_p50:.3f}, per round {http_rounds:.3f}",
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--metrics-port", type=int, help="also serve the traced side's metrics")
    parser.add_argument(
        "--sample", type=float, help="trace this share of requests (parentbased_traceidratio)"
    )
    parser.add_argument(
        "--control", action="store_true", help="trace neither side: the noise floor of the pair"
    )
    parser.add_argument("--serve-otlp", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    asyncio.run(
        serve_otlp()
        if args.serve_otlp
        else main(args.n, args.metrics_port, args.sample, args.control)
    )
