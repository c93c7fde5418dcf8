"""``symphainy up`` and the admin commands as real processes, driven like a new user would."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Up:
    """A running ``symphainy up`` and what it printed."""

    process: asyncio.subprocess.Process
    url: str
    nats_url: str
    admin_password: str | None


async def symphainy(cwd: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run one ``symphainy`` command to completion: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "symphainy",
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _env() -> dict[str, str]:
    # A clean environment: no SYMPHAINY_* from the developer's shell.
    return {k: v for k, v in os.environ.items() if not k.startswith("SYMPHAINY_")}


@asynccontextmanager
async def running_up(data_dir: Path, nats_port: int) -> AsyncIterator[Up]:
    """Start ``symphainy up`` and wait for the line that announces its URL."""
    log = (data_dir.parent / f"up-{nats_port}.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "symphainy",
        "up",
        "--port",
        "0",
        "--nats-port",
        str(nats_port),
        "--data-dir",
        str(data_dir),
        cwd=data_dir.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        env=_env(),
    )
    try:
        password = None
        assert process.stdout is not None
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)).decode()
            assert line, f"symphainy up exited early with {await process.wait()}"
            if found := re.search(r"created user admin with password (\S+)", line):
                password = found.group(1)
            if found := re.search(r"symphainy is up \(NATS (\S+)\): (http://\S+)", line):
                yield Up(process, found.group(2), found.group(1), password)
                break
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()


async def stop(up: Up) -> int:
    """Ctrl-C, as a user would press it; the exit code."""
    up.process.send_signal(signal.SIGINT)
    return await asyncio.wait_for(up.process.wait(), 15)


async def login(url: str, username: str, password: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as http:
        return await http.post("/api/auth/login", json={"username": username, "password": password})


async def test_up_serves_admin_and_keeps_everything_across_a_restart(tmp_path: Path) -> None:
    data_dir, nats_port = tmp_path / "data", free_port()
    async with running_up(data_dir, nats_port) as up:
        assert up.admin_password is not None
        assert up.nats_url == f"nats://127.0.0.1:{nats_port}"
        first = await login(up.url, "admin", up.admin_password)
        assert first.status_code == 200
        session_id = first.json()["session_id"]
        token = first.json()["session_token"]

        # The admin commands find their NATS identity (and URL) in the data directory.
        code, out, _ = await symphainy(tmp_path, "sessions", "list", "--data-dir", "data")
        assert code == 0
        assert session_id in out
        code, out, err = await symphainy(
            tmp_path,
            "users",
            "add",
            "bob",
            "--password-stdin",
            "--data-dir",
            "data",
            stdin=b"bob's long password\n",
        )
        assert code == 0, err
        assert (await login(up.url, "bob", "bob's long password")).status_code == 200
        assert await stop(up) == 0
    key_file = data_dir / "signing-keys.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    # The bus's secrets: the owner's alone, and the same on the next start.
    secrets_dir = data_dir / "secrets"
    assert secrets_dir.stat().st_mode & 0o777 == 0o700
    assert data_dir.stat().st_mode & 0o777 == 0o700
    for path in secrets_dir.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
    roles = (secrets_dir / "roles.json").read_text()

    async with running_up(data_dir, nats_port) as again:
        assert again.admin_password is None, "admin must be created only on first start"
        assert (secrets_dir / "roles.json").read_text() == roles, "credentials must be reused"
        assert (await login(again.url, "admin", up.admin_password)).status_code == 200
        # The old session and its token survived: same KV data, same signing key.
        async with httpx.AsyncClient(
            base_url=again.url, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            mine = await http.get(f"/api/session/{session_id}")
        assert mine.status_code == 200
        assert mine.json()["state"] == "active"
        code, out, _ = await symphainy(
            tmp_path, "sessions", "revoke", session_id, "--nats-url", again.nats_url,
            "--data-dir", "data",
        )  # fmt: skip
        assert code == 0
        assert "revoked" in out
        assert await stop(again) == 0


async def test_taken_nats_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, _, err = await symphainy(
            tmp_path, "up", "--port", "0", "--nats-port", str(port), "--data-dir", "d"
        )
    assert code == 1
    assert f"{port} is already in use" in err
    assert "Traceback" not in err


async def test_admin_commands_without_nats_fail_clearly(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    code, _, err = await symphainy(tmp_path, "users", "list", "--nats-url", url)
    assert code == 1
    assert "cannot reach NATS" in err
    assert "Traceback" not in err
