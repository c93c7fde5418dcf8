"""What the socket-side benchmarks share: the real processes, the bare floor, a lean socket client.

- ``stack()``: an embedded nats-server with authorization (the role users and ``bench``, who may
  do anything, for floors and setup) and the real ``symphainy up --nats-url`` on it, as a
  subprocess in a temporary data dir; ``start_up``/``start_bare`` start more servers on it.
- The floor: ``python bench/ws_harness.py --bare KEY_FILE``, a bare FastAPI + uvicorn app (h11,
  wsproto, as ours) that admits a socket on JWT verification alone, with the same key, and
  answers each text frame with one ``result`` frame.
- ``RawSocket``: a WebSocket client as one ``asyncio.Protocol`` (no task, a few KB a socket), so
  10k sockets and thousands of admissions a second cost the client little; it answers pings.
- Process RSS (a server and its children, nats-server excepted) and the ``RESULT`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import resource
import secrets
import signal
import socket
import sys
import tempfile
import time
import zlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

REPO = Path(__file__).resolve().parent.parent
AGENT_PATH = "/api/runtime/agent"
UP_LINE = re.compile(r"symphainy is up \(NATS \S+\): (http://\S+)")
BARE_LINE = re.compile(r"bare app up: (http://\S+)")
START_TIMEOUT_S = 60.0
WS_OPCODES = {"text": 0x1, "close": 0x8, "ping": 0x9, "pong": 0xA}


def raise_nofile() -> None:
    """Lift this process's open-file limit to its hard limit (10k sockets need 10k fds)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _child_setup() -> None:
    # Runs in each server child: its own session, the fd limit lifted, dead with the benchmark.
    raise_nofile()
    os.setsid()
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def result_line(figure: str, value: float, op: str, goal: float) -> str:
    """The machine-readable last line (bench/README.md)."""
    ok = value <= goal if op == "<=" else value >= goal
    return f"RESULT {figure} ratio={value:.3g} goal={op}{goal:g} pass={str(ok).lower()}"


def rss_kb(pid: int) -> int:
    """Resident KB of ``pid`` and all its descendants, except a nats-server."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            if (Path(f"/proc/{current}/comm").read_text().strip()) == "nats-server":
                continue
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total += int(found.group(1)) if found else 0
    return total


@dataclass
class Server:
    """One server process and the base URL it announced."""

    name: str
    process: asyncio.subprocess.Process
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) it serves on."""
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    def rss_kb(self) -> int:
        """Resident KB of the process and its children (nats-server excepted)."""
        return rss_kb(self.pid)

    async def stop(self) -> None:
        """SIGTERM, as an operator stops it; SIGKILL if it does not exit within 30 s."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_server(
    name: str, args: list[str], log_dir: Path, announce: re.Pattern[str], env: Mapping[str, str]
) -> Server:
    """Start ``python ARGS`` and return once it printed the line ``announce`` matches."""
    log_path = log_dir / f"{name}.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SYMPHAINY_")}
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=clean | dict(env),
            preexec_fn=_child_setup,
        )
    assert process.stdout is not None
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                code = await process.wait()
                raise RuntimeError(f"{name} exited with {code}; see {log_path}")
            if found := announce.search(line):
                return Server(name, process, found.group(1), log_path)


@dataclass
class Stack:
    """The bus, a running ``symphainy up`` on it, and where everything lives."""

    tmp: Path
    data_dir: Path
    nats_url: str
    bench: Any  # bus.identity.NatsIdentity of the all-permitted ``bench`` user
    roles: Mapping[Any, Any]  # Role -> NatsIdentity
    up: Server
    env: dict[str, str]

    @property
    def key_file(self) -> Path:
        """The signing keys ``up`` generated (the bare floor verifies with the same key)."""
        return self.data_dir / "signing-keys.json"

    async def start_up(self, name: str, env: Mapping[str, str] | None = None) -> Server:
        """Another ``symphainy up`` on the same bus and data dir (e.g. a fresh one per repeat),
        with the stack's settings overrides and ``env``'s."""
        merged = self.env | dict(env or {})
        return await start_up(self.nats_url, self.data_dir, self.tmp, merged, name)

    async def start_bare(self, name: str = "bare", *, deflate: bool = True) -> Server:
        """The bare floor app, verifying tokens with ``up``'s key; ``deflate``: whether it
        accepts permessage-deflate (uvicorn's default)."""
        args = [str(Path(__file__)), "--bare", str(self.key_file)]
        args += [] if deflate else ["--no-deflate"]
        return await start_server(name, args, self.tmp, BARE_LINE, {})


async def start_up(
    nats_url: str, data_dir: Path, log_dir: Path, env: Mapping[str, str], name: str
) -> Server:
    """``symphainy up`` on the bus at ``nats_url`` with ``data_dir``, on a free port."""
    args = ["-m", "symphainy", "up", "--nats-url", nats_url, "--port", "0"]
    args += ["--data-dir", str(data_dir)]
    return await start_server(name, args, log_dir, UP_LINE, env)


@asynccontextmanager
async def stack(env: Mapping[str, str] | None = None) -> AsyncIterator[Stack]:
    """The bus and one ``symphainy up`` (with ``SYMPHAINY_*`` overrides ``env``); all stopped
    and removed on exit."""
    from bus.embedded import EmbeddedNats
    from bus.identity import NatsIdentity
    from bus.permissions import Role
    from bus.provision import ensure_secrets, role_identity, write_contexts, write_server_config

    raise_nofile()
    with tempfile.TemporaryDirectory(prefix="bench-ws-") as name:
        tmp = Path(name)
        data_dir = tmp / "data"
        data_dir.mkdir(mode=0o700)
        bus = ensure_secrets(data_dir)
        password = secrets.token_urlsafe(24)
        config = write_server_config(bus, [{"user": "bench", "password": password}])
        nats = EmbeddedNats(data_dir / "nats", config=config).start()
        servers: list[Server] = []
        try:
            write_contexts(bus, data_dir, nats.url)
            roles = {role: role_identity(bus, role, nats.url) for role in Role}
            bench = NatsIdentity(nats.url, "bench", password)
            overrides = dict(env or {})
            up = await start_up(nats.url, data_dir, tmp, overrides, "up")
            servers.append(up)
            yield Stack(tmp, data_dir, nats.url, bench, roles, up, overrides)
        except BaseException:
            _print_log_tails(tmp)
            raise
        finally:
            for server in servers:
                await server.stop()
            nats.stop()


def _print_log_tails(log_dir: Path) -> None:
    # The temp dir goes with the run: show what the servers logged last.
    for log in sorted(log_dir.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-15:]
        print(f"--- {log.name}", *tail, sep="\n", file=sys.stderr)


async def login_admin(stack: Stack, url: str) -> dict[str, Any]:
    """Log in as ``admin`` (once per run: argon2 is not what is measured); the 200 body."""
    password = (stack.data_dir / "admin-password").read_text().strip()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post(
            "/api/auth/login", json={"username": "admin", "password": password}
        )
    response.raise_for_status()
    return dict(response.json())


async def new_sessions(url: str, token: str, n: int, concurrency: int = 16) -> list[str]:
    """Tokens of ``n`` new sessions of the caller (``POST /api/session/create``, no argon2)."""
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=limits) as http:

        async def one() -> str:
            async with gate:
                response = await http.post("/api/session/create")
            response.raise_for_status()
            return str(response.json()["session_token"])

        return list(await asyncio.gather(*(one() for _ in range(n))))


class RawSocket(asyncio.Protocol):
    """One client WebSocket: the handshake, then frames parsed in ``data_received``.

    Pings are answered, a close from the server is answered and recorded (``closed`` holds its
    code, ``closed_at`` when it arrived); data frames go to ``inbox``.
    """

    def __init__(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self._request = request
        self._buffer = bytearray()
        self._head_done = False
        self._close_sent = False
        self._pong: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()
        self.closed_at = 0.0
        self.deflate = False
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._head_done:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).decode("latin-1")
            del self._buffer[: end + 4]
            self._head_done = True
            if not head.startswith("HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(f"handshake refused: {head[:80]!r}"))
                return
            self.deflate = "permessage-deflate" in head.lower()
            self.opened.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            length, offset = buffer[1] & 0x7F, 2
            if length == 126:
                length, offset = int.from_bytes(buffer[2:4]), 4
            elif length == 127:
                length, offset = int.from_bytes(buffer[2:10]), 10
            if len(buffer) < offset + length:
                return
            opcode, payload = buffer[0] & 0x0F, bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            if opcode == WS_OPCODES["ping"]:
                self._write(WS_OPCODES["pong"], payload)
            elif opcode == WS_OPCODES["pong"]:
                if self._pong is not None and not self._pong.done():
                    self._pong.set_result(None)
            elif opcode == WS_OPCODES["close"]:
                self._on_close(int.from_bytes(payload[:2]) if len(payload) >= 2 else 1005)
            else:
                self.inbox.put_nowait(payload)

    def _on_close(self, code: int) -> None:
        self.closed_at = time.perf_counter()
        if not self._close_sent:
            self._write(WS_OPCODES["close"], code.to_bytes(2))
            self._close_sent = True
        if not self.closed.done():
            self.closed.set_result(code)
        assert self.transport is not None
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("connection lost during the handshake"))
        if not self.closed.done():
            self.closed_at = time.perf_counter()
            self.closed.set_result(1006)

    def _write(self, opcode: int, payload: bytes, *, rsv1: bool = False) -> None:
        # Client frames are masked (RFC 6455 5.3); the payloads here are small.
        mask = os.urandom(4)
        size = len(payload)
        first = bytes([0x80 | (0x40 if rsv1 else 0) | opcode])
        if size < 126:
            head = first + bytes([0x80 | size])
        elif size < 65536:
            head = first + bytes([0x80 | 126]) + size.to_bytes(2)
        else:
            head = first + bytes([0x80 | 127]) + size.to_bytes(8)
        keys = (mask * (size // 4 + 1))[:size]
        masked = (int.from_bytes(payload) ^ int.from_bytes(keys)).to_bytes(size)
        assert self.transport is not None
        self.transport.write(head + mask + masked)

    async def ping(self) -> None:
        """One ping answered: the socket is open and past its accept (a rejected socket is
        closed right after its accept, so its close comes first and this raises)."""
        self._pong = asyncio.get_running_loop().create_future()
        self._write(WS_OPCODES["ping"], b"bench")
        pong, closed = self._pong, self.closed
        waiting: set[asyncio.Future[Any]] = {pong, closed}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if closed.done():
            pong.cancel()
            raise RuntimeError(f"socket closed with {closed.result()} instead of a pong")

    def send_text(self, text: str, *, compress: bool = False) -> None:
        """One text frame, compressed (permessage-deflate) if asked and negotiated."""
        data = text.encode()
        if compress and self.deflate:
            deflater = zlib.compressobj(wbits=-15)
            data = (deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]
        self._write(WS_OPCODES["text"], data, rsv1=compress and self.deflate)

    async def close(self, code: int = 1000) -> int:
        """Close and return the code of the server's close frame (4xxx: it refused us first)."""
        if not self.closed.done() and not self._close_sent:
            self._close_sent = True
            self._write(WS_OPCODES["close"], code.to_bytes(2))
        return await self.closed

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if self.transport is not None:
            self.transport.abort()


async def open_socket(
    address: tuple[str, int], token: str, *, deflate: bool = False, path: str = AGENT_PATH
) -> RawSocket:
    """A socket with its handshake answered (101), the token as the subprotocol pair."""
    host, port = address
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Protocol: symphainy.v1, bearer.{token}",
    ]
    if deflate:
        lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: RawSocket(request), host, port)
    await protocol.opened
    return protocol


async def open_many(
    address: tuple[str, int], tokens: list[str], n: int, *, deflate: bool, in_flight: int = 64
) -> list[RawSocket]:
    """``n`` admitted sockets (token ``i % len(tokens)``), ``in_flight`` handshakes at a time."""
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> RawSocket:
        async with gate:
            sock = await open_socket(address, tokens[i % len(tokens)], deflate=deflate)
            await sock.ping()
            return sock

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def close_all(sockets: list[RawSocket]) -> None:
    """Close every socket and wait for the server's close frames (or the connection's end)."""
    results = await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    del results


def bare_app(key_file: Path) -> Any:
    """The floor: a FastAPI socket that admits on JWT verification only (same key, same claims),
    then answers each text frame ``{"id": ...}`` with a ``result`` frame carrying its payload."""
    keys = json.loads(key_file.read_text())
    secret = keys["keys"][keys["active"]]
    claims = ["sub", "sid", "jti", "iat", "nbf", "exp", "iss", "aud"]
    app = FastAPI()

    @app.websocket(AGENT_PATH)
    async def agent(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols") or []
        token = next((p[len("bearer.") :] for p in offered if p.startswith("bearer.")), "")
        try:
            jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                audience="symphainy",
                issuer="symphainy",
                options={"require": claims},
            )
        except jwt.PyJWTError:
            await websocket.accept(subprotocol="symphainy.v1")
            await websocket.close(4401)
            return
        await websocket.accept(subprotocol="symphainy.v1")
        try:
            while True:
                frame = json.loads(await websocket.receive_text())
                result = {"type": "result", "id": frame.get("id"), "data": frame.get("payload")}
                await websocket.send_text(json.dumps(result))
        except WebSocketDisconnect:
            return

    return app


async def _serve_bare(key_file: Path, deflate: bool) -> None:
    # Bound as ``symphainy up`` binds (IPPROTO_TCP, so accepted connections get TCP_NODELAY).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    config = uvicorn.Config(
        bare_app(key_file),
        http="h11",
        ws="wsproto",
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        ws_max_size=64 * 1024,
        ws_per_message_deflate=deflate,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    print(f"bare app up: http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    await server.serve(sockets=[sock])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the bare floor app of the socket benchmarks")
    parser.add_argument("--bare", type=Path, required=True, metavar="KEY_FILE")
    parser.add_argument("--no-deflate", action="store_true", help="refuse permessage-deflate")
    args = parser.parse_args()
    asyncio.run(_serve_bare(args.bare, not args.no_deflate))
