"""The listening socket ``symphainy up`` and ``experience`` serve on: connections accepted from it
get TCP_NODELAY, or every response written in two pieces waits for the client's delayed ACK."""

from __future__ import annotations

import asyncio
import socket

from symphainy.run import _listen


async def test_accepted_connections_have_nodelay() -> None:
    sock = _listen("127.0.0.1", 0)
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            conn = transport.get_extra_info("socket")
            accepted.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    _, writer = await asyncio.open_connection(*sock.getsockname())
    try:
        assert await asyncio.wait_for(accepted, 5) != 0
    finally:
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
