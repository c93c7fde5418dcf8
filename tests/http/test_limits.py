"""Every unauthenticated input bounded and answered fast, attacked over raw TCP as a stranger would.

Real uvicorn, runtime and nats-server; each attack is bytes on a socket, so what is measured is
what the server does with them (httpx would refuse to send most of these requests).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import httpx

from bus.settings import Settings
from tests.stack import PASSWORD, Stack, StackFactory

LIMIT = Settings.model_fields["http_max_body_bytes"].default


@dataclass
class Answer:
    """What a raw client got back."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float  # from the first byte sent to the status line read
    closed: bool  # the server closed the connection after answering
    sent: int = 0
    error: dict[str, str] = field(default_factory=dict)


async def attack(
    stack: Stack, head: bytes, body: Iterable[bytes] = (), timeout: float = 5.0
) -> Answer:
    """Send ``head`` then ``body`` while reading the answer, as a client that keeps sending."""
    assert stack.server is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.server.bound_port)
    sent = 0

    async def feed() -> None:
        nonlocal sent
        try:
            for chunk in itertools.chain([head], body):
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        except ConnectionError:
            pass  # the server hung up: what a refusal may do

    started = time.monotonic()
    feeding = asyncio.create_task(feed())
    try:
        async with asyncio.timeout(timeout):
            status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
            seconds = time.monotonic() - started
            headers = {
                name.lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines if line)
            }
            content = await reader.readexactly(int(headers.get("content-length", "0")))
            try:
                closed = await reader.read(1) == b""
            except ConnectionError:
                closed = True
    finally:
        feeding.cancel()
        writer.close()
    answer = Answer(int(status_line.split()[1]), headers, content, seconds, closed, sent)
    if answer.status >= 400 and headers.get("content-type", "").startswith("application/json"):
        answer.error = json.loads(content)["error"]
    return answer


def request_head(
    stack: Stack, method: str, path: str, *extra: str, body_length: int | None = None
) -> bytes:
    assert stack.server is not None
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{stack.server.bound_port}", *extra]
    if body_length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {body_length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(chunks: Iterable[bytes]) -> Iterable[bytes]:
    for chunk in chunks:
        yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"


async def slowest_healthz(stack: Stack, until: asyncio.Task[Answer]) -> float:
    """The slowest of /healthz answers asked one after another until ``until`` is done."""
    slowest = 0.0
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as http:
        while True:
            started = time.monotonic()
            assert (await http.get("/healthz")).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
            if until.done():
                return slowest


async def test_a_declared_100_mb_body_is_refused_unread_and_health_stays_fast(
    stack: Stack,
) -> None:
    size = 100_000_000
    flood = itertools.repeat(b"a" * 65536, size // 65536)
    head = request_head(stack, "POST", "/api/auth/login", body_length=size)
    refusal = asyncio.create_task(attack(stack, head, [b'{"username": "', *flood]))
    slowest = await slowest_healthz(stack, refusal)
    answer = refusal.result()
    assert answer.status == 413
    assert answer.error["code"] == "payload_too_large"
    assert answer.seconds < 2.0
    assert answer.closed
    assert answer.sent < size / 10, "the server went on reading a refused body"
    assert slowest < 1.0


async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(stack: Stack) -> None:
    head = request_head(stack, "POST", "/api/auth/login", "Transfer-Encoding: chunked")
    # Just over the limit, with no end: an answer cannot wait for the body to finish.
    pieces = [b"a" * 4096] * (LIMIT // 4096 + 2)
    answer = await attack(stack, head, chunked(pieces))
    assert answer.status == 413
    assert answer.error["code"] == "payload_too_large"
    assert answer.closed


async def test_bodies_within_the_limit_reach_the_route_chunked_or_not(stack: Stack) -> None:
    credentials = {"username": "alice", "password": PASSWORD}

    async def as_chunks() -> AsyncIterator[bytes]:
        yield json.dumps(credentials).encode()

    padded = {**credentials, "padding": "x" * (LIMIT - 200)}
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        plain = await http.post("/api/auth/login", json=credentials)
        streamed = await http.post(
            "/api/auth/login", content=as_chunks(), headers={"Content-Type": "application/json"}
        )
        near_the_limit = await http.post("/api/auth/login", json=padded)
    assert plain.status_code == 200, plain.text
    assert streamed.status_code == 200, streamed.text
    # Read and judged by the route (an unknown field), not refused for its size.
    assert near_the_limit.status_code == 422, near_the_limit.text


async def test_a_body_that_trickles_is_timed_out(make_stack: StackFactory) -> None:
    stack = await make_stack(http_read_timeout_s=0.5)
    head = request_head(stack, "POST", "/api/auth/login", body_length=100)
    answer = await attack(stack, head, [b'{"username": '])
    assert answer.status == 408
    assert answer.error["code"] == "request_timeout"
    assert answer.closed


async def test_a_head_that_never_ends_is_timed_out(make_stack: StackFactory) -> None:
    stack = await make_stack(http_read_timeout_s=0.5)
    assert stack.server is not None
    silent = await attack(stack, b"")
    partial = await attack(stack, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    for answer in (silent, partial):
        assert answer.status == 408
        assert answer.error["code"] == "request_timeout"
        assert answer.closed


async def test_too_many_header_fields_are_refused(stack: Stack) -> None:
    fields = [f"X-Field-{n}: {n}" for n in range(200)]
    answer = await attack(stack, request_head(stack, "GET", "/healthz", *fields))
    assert answer.status == 431
    assert answer.error["code"] == "headers_too_large"
    assert answer.seconds < 2.0
    assert answer.closed


async def test_a_64_kb_header_is_refused_whether_it_comes_at_once_or_in_pieces(
    stack: Stack,
) -> None:
    at_once = await attack(stack, request_head(stack, "GET", "/healthz", "X-Big: " + "a" * 65536))
    # 64 MB of one header, sent as it is read: refused once the head passes the bound.
    head = request_head(stack, "GET", "/healthz").removesuffix(b"\r\n")
    endless = itertools.repeat(b"a" * 65536, 1024)
    in_pieces = await attack(stack, head + b"X-Big: ", endless)
    for answer in (at_once, in_pieces):
        assert answer.status == 431
        assert answer.error["code"] == "headers_too_large"
        assert answer.seconds < 2.0
        assert answer.closed
    assert in_pieces.sent < 16 * 1024 * 1024, "the server went on reading a refused head"


async def test_ordinary_heads_pass(stack: Stack) -> None:
    fields = [f"X-Field-{n}: {n}" for n in range(50)]
    answer = await attack(
        stack,
        request_head(
            stack, "GET", "/healthz", "Connection: close", "X-Big: " + "a" * 8192, *fields
        ),
    )
    assert answer.status == 200
