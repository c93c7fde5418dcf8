"""The floors the benchmarks compare against, each a process of its own like what it stands for.

``responder``: a raw nats-py responder, one task per message (what the issue calls the floor of
the runtime): it echoes the request, or with ``--kv BUCKET`` answers with the KV entry of the
request's ``session_id`` (one KV get, as ``VerifySession`` does at least).

``http``: the Experience Plane's app and server (``experience.server.build_server``, as
``symphainy experience`` builds them) on a listening socket this floor makes itself, with
``TCP_NODELAY`` forced on: the stall-free figure the real ``symphainy up`` is held to.

Each prints ``floor ready`` once it serves and runs until SIGTERM.
Run by the row scripts: ``python bench/floors.py responder --context FILE --subject S [--kv B]``,
``python bench/floors.py http --data-dir DIR --port PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
from pathlib import Path

import nats
from nats.aio.msg import Msg

from bus.identity import NatsIdentity
from bus.settings import Settings
from experience import keys
from experience.app import create_app
from experience.server import build_server


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def responder(context: Path, subject: str, bucket: str | None) -> None:
    """Answer ``subject`` with a task per message: the request back, or one KV entry."""
    nc = await nats.connect(**NatsIdentity.from_context(context).nats_options())
    kv = await nc.jetstream().key_value(bucket) if bucket else None
    tasks: set[asyncio.Task[None]] = set()

    async def answer(msg: Msg) -> None:
        if kv is None:
            await msg.respond(msg.data)
            return
        entry = await kv.get(json.loads(msg.data)["session_id"])
        await msg.respond(entry.value or b"")

    async def on_message(msg: Msg) -> None:
        task = asyncio.create_task(answer(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await nc.subscribe(subject, cb=on_message)
    await nc.flush()
    print(f"floor ready on {subject}", flush=True)
    await _until_stopped()
    await nc.drain()


def _nodelay_listener(port: int) -> socket.socket:
    # IPPROTO_TCP makes asyncio set TCP_NODELAY on every accepted connection; the option on the
    # listener as well (Linux hands it down to accepted sockets), so it holds either way.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    return sock


async def http(data_dir: Path, port: int) -> None:
    """The Experience Plane's app on the data directory's bus and keys, TCP_NODELAY forced."""
    settings = keys.resolve(Settings(data_dir=data_dir, host="127.0.0.1", port=port))
    server = build_server(create_app(settings), settings, "127.0.0.1", port, handle_signals=False)
    sock = _nodelay_listener(port)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    print(f"floor ready on http://127.0.0.1:{port}", flush=True)
    await _until_stopped()
    server.should_exit = True
    await serving
    sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    kinds = parser.add_subparsers(dest="kind", required=True)
    answering = kinds.add_parser("responder")
    answering.add_argument("--context", type=Path, required=True)
    answering.add_argument("--subject", required=True)
    answering.add_argument("--kv", help="answer with this bucket's entry of the session_id")
    serving = kinds.add_parser("http")
    serving.add_argument("--data-dir", type=Path, required=True)
    serving.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.kind == "responder":
        asyncio.run(responder(args.context, args.subject, args.kv))
    else:
        asyncio.run(http(args.data_dir, args.port))


if __name__ == "__main__":
    main()
