"""Every WebSocket handshake is answered or closed within seconds, whatever its size.

Raw TCP against real uvicorn, runtime and nats-server. uvicorn's default WebSocket
implementation (websockets-sansio) never answered a handshake over its own limits (a line over
8 KB, more than 128 fields): the socket stayed open and silent. These handshakes are answered:
an HTTP refusal, or the gate's close frame after a 101.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from tests.stack import Stack, StackFactory

ANSWER_WITHIN_S = 5.0

# websockets' own bounds, which its sansio handshake refused without a word.
WEBSOCKETS_MAX_LINE = 8192


@dataclass
class Handshake:
    """What a raw client got for its upgrade request."""

    status: int
    close_code: int | None  # of the close frame that followed a 101
    opcode: int | None = None  # of the first frame after a 101


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked frame from the server: (opcode, payload)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)


async def upgrade(stack: Stack, *, query: str = "", fields: tuple[str, ...] = ()) -> Handshake:
    """Send an upgrade request; read its status line and, after a 101, its first frame."""
    assert stack.server is not None
    port = stack.server.bound_port
    head = "\r\n".join(
        [
            f"GET /api/runtime/agent{query} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            *fields,
        ]
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(ANSWER_WITHIN_S):
            try:
                writer.write(head.encode() + b"\r\n\r\n")
                await writer.drain()
            except ConnectionError:
                pass  # refused while still sending: the answer may be waiting
            status_line = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[0]
            status = int(status_line.split()[1])
            if status != 101:
                return Handshake(status, None)
            opcode, payload = await read_frame(reader)
            if opcode == 0x8:
                return Handshake(status, struct.unpack("!H", payload[:2])[0], opcode)
            return Handshake(status, None, opcode)
    finally:
        writer.close()


async def test_a_64_kb_header_is_answered(stack: Stack) -> None:
    answer = await upgrade(stack, fields=("X-Big: " + "a" * 65536,))
    assert answer.status == 431


async def test_a_1_mb_session_token_in_the_query_is_answered(stack: Stack) -> None:
    answer = await upgrade(stack, query="?session_token=" + "a" * (1 << 20))
    assert answer.status == 431


async def test_heads_past_the_websocket_librarys_own_bounds_reach_the_gate(stack: Stack) -> None:
    """Within the HTTP bounds, over websockets' (a line, a token): the gate answers them."""
    long_line = await upgrade(stack, fields=("X-Big: " + "a" * (WEBSOCKETS_MAX_LINE + 2048),))
    long_token = await upgrade(stack, query="?session_token=" + "a" * (WEBSOCKETS_MAX_LINE + 2048))
    assert (long_line.status, long_line.close_code) == (101, 4401)  # no token
    assert (long_token.status, long_token.close_code) == (101, 4401)  # not a token


async def test_too_many_header_fields_are_answered(stack: Stack) -> None:
    answer = await upgrade(stack, fields=tuple(f"X-Field-{n}: {n}" for n in range(200)))
    assert answer.status == 431


async def test_admitted_sockets_still_get_keepalive_pings(make_stack: StackFactory) -> None:
    """The pinned implementation keeps the gate's pings (uvicorn gave wsproto pings in 0.46)."""
    stack = await make_stack(ws_ping_interval_s=0.2)
    await stack.add_user("alice")
    token = (await stack.login("alice"))["session_token"]
    answer = await upgrade(stack, fields=(f"Sec-WebSocket-Protocol: symphainy.v1, bearer.{token}",))
    assert (answer.status, answer.opcode) == (101, 0x9)
