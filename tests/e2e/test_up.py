"""``symphainy up`` and the admin commands as real processes, driven like a new user would."""

from __future__ import annotations

import asyncio
import json
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
import pytest

from tests.unit.test_keys import RSA_512

START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ADMIN_LINE = re.compile(r"(created user admin|user admin): its password is in (\S+)")


@dataclass
class Up:
    """A running ``symphainy up`` and what it printed."""

    process: asyncio.subprocess.Process
    url: str
    nats_url: str
    # The line saying where admin's password is, and the password in that file.
    admin_line: str | None
    admin_password: str | None
    log: Path


async def symphainy(
    cwd: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
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
        env=_env() | (env or {}),
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _env() -> dict[str, str]:
    # A clean environment: no SYMPHAINY_* from the developer's shell.
    return {k: v for k, v in os.environ.items() if not k.startswith("SYMPHAINY_")}


@asynccontextmanager
async def running_up(
    data_dir: Path, nats_port: int, port: int = 0, *extra: str
) -> AsyncIterator[Up]:
    """Start ``symphainy up`` and wait for the line that announces its URL; stderr (its log)
    goes to a file."""
    log_path = data_dir.parent / f"up-{nats_port}.log"
    log = log_path.open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "symphainy",
        "up",
        "--port",
        str(port),
        "--nats-port",
        str(nats_port),
        "--data-dir",
        str(data_dir),
        *extra,
        cwd=data_dir.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        env=_env(),
    )
    try:
        admin_line = password = None
        assert process.stdout is not None
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)).decode()
            assert line, f"symphainy up exited early with {await process.wait()}"
            if found := ADMIN_LINE.search(line):
                admin_line = line.strip()
                password = (await asyncio.to_thread(Path(found.group(2)).read_text)).strip()
            if found := re.search(r"symphainy is up \(NATS (\S+)\): (http://\S+)", line):
                yield Up(process, found.group(2), found.group(1), admin_line, password, log_path)
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
        assert (
            up.admin_line == f"created user admin: its password is in {data_dir / 'admin-password'}"
        )
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
        assert again.admin_line is not None
        assert again.admin_line.startswith("user admin: its password is in")
        assert again.admin_password == up.admin_password, "admin is created on first start only"
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


@pytest.mark.parametrize(
    ("key_file", "env", "refused"),
    [
        ({"k1": "secret"}, {}, "'k1' from data/signing-keys.json is a placeholder"),
        ({"k1": "a" * 32}, {}, "'k1' from data/signing-keys.json is a repeated pattern"),
        (
            None,
            {"SYMPHAINY_JWT_ALGORITHM": "RS256", "SYMPHAINY_JWT_KEYS": json.dumps({"k1": RSA_512})},
            "'k1' from SYMPHAINY_JWT_KEYS is RSA-512",
        ),
    ],
)
async def test_a_weak_signing_key_fails_the_start_in_one_line_and_creates_nothing(
    tmp_path: Path, key_file: dict[str, str] | None, env: dict[str, str], refused: str
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if key_file is not None:
        (data_dir / "signing-keys.json").write_text(json.dumps({"active": "k1", "keys": key_file}))
    code, out, err = await symphainy(
        tmp_path,
        "up",
        "--port",
        "0",
        "--nats-port",
        str(free_port()),
        "--data-dir",
        "data",
        env=env,
    )
    assert code == 1
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"error: signing key {refused}"), line
    assert "refused outside --dev" in line
    assert not (data_dir / "admin-password").exists()
    assert not (data_dir / "nats").exists()


async def test_a_login_body_cannot_forge_or_colour_a_log_line(tmp_path: Path) -> None:
    forged = "1999-01-01 00:00:00,000 INFO experience.routes.auth: login: user admin forged"
    hostile = f"x\n{forged}\x1b[31m\r"
    data_dir, nats_port = tmp_path / "data", free_port()
    async with running_up(data_dir, nats_port) as up:
        async with httpx.AsyncClient(base_url=up.url) as http:
            body = {"username": hostile, "password": "p", hostile: 1}
            assert (await http.post("/api/auth/login", json=body)).status_code == 422
            body = {"username": hostile, "password": "p"}
            assert (await http.post("/api/auth/login", json=body)).status_code == 401
        assert await stop(up) == 0
    log = up.log.read_bytes()
    assert b"forged" in log, "the hostile value must reach the log for this test to mean anything"
    assert b"\x1b" not in log
    assert b"\r" not in log
    record = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S+: ")
    for line in log.decode().splitlines():
        assert not line.startswith("1999-"), f"forged line in the log: {line!r}"
        assert record.match(line) or line.startswith("  "), line


async def test_first_start_with_the_http_port_taken_creates_nothing_and_loses_nothing(
    tmp_path: Path,
) -> None:
    data_dir, nats_port = tmp_path / "data", free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, out, err = await symphainy(
            tmp_path, "up", "--port", str(port), "--nats-port", str(nats_port), "--data-dir", "data"
        )
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"error: cannot serve HTTP on 127.0.0.1:{port}: Address already in use"
    ]
    assert not data_dir.exists(), "a start that cannot serve must create nothing"

    password_file = data_dir / "admin-password"
    async with running_up(data_dir, nats_port, port=port) as up:
        assert up.admin_line == f"created user admin: its password is in {password_file}"
        assert password_file.stat().st_mode & 0o777 == 0o600
        assert up.admin_password is not None
        # Killed before anyone read the line: the password is still in its file.
        up.process.kill()
        await up.process.wait()
    async with running_up(data_dir, nats_port, port=port) as again:
        assert again.admin_line is not None
        assert again.admin_line.startswith(f"user admin: its password is in {password_file}")
        assert again.admin_password == up.admin_password
        assert (await login(again.url, "admin", up.admin_password)).status_code == 200
        assert await stop(again) == 0


@pytest.mark.parametrize("action", ["add", "passwd"])
async def test_a_password_prompt_without_a_terminal_is_one_line(
    tmp_path: Path, action: str
) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    code, out, err = await symphainy(tmp_path, "users", action, "bob", "--nats-url", url, stdin=b"")
    assert code == 1
    assert out == ""
    assert err.splitlines() == ["error: no terminal to ask for the password: pass --password-stdin"]


async def test_invalid_settings_are_one_line(tmp_path: Path) -> None:
    code, _, err = await symphainy(tmp_path, "users", "list", env={"SYMPHAINY_PORT": "eighty"})
    assert code == 2
    assert err.splitlines() == [
        "error: invalid settings: port: Input should be a valid integer, unable to parse string "
        "as an integer"
    ]


def children(pid: int, program: bytes) -> set[int]:
    """The pids of the children of ``pid`` one of whose arguments is ``program`` (or a path to
    it): ``b"runtime"`` for up's worker processes, ``b"nats-server"`` for its NATS."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
            continue
        if any(arg == program or arg.endswith(b"/" + program) for arg in argv):
            found.add(int(entry.name))
    return found


def worker_children(pid: int) -> set[int]:
    """The pids of the ``symphainy runtime`` processes whose parent is ``pid``."""
    return children(pid, b"runtime")


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def until(check: object, timeout: float = 20.0) -> None:
    """Poll ``check()`` (a process appearing has no event to await) until true, or fail."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_workers_are_processes_restarted_when_they_die_and_stopped_with_up(
    tmp_path: Path,
) -> None:
    async with running_up(tmp_path / "data", free_port(), 0, "--workers", "2") as up:
        pid = up.process.pid
        workers = worker_children(pid)
        assert len(workers) == 2
        assert up.admin_password is not None
        assert (await login(up.url, "admin", up.admin_password)).status_code == 200

        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        await until(lambda: len(worker_children(pid) - {killed}) == 2)
        replaced = worker_children(pid)
        assert killed not in replaced
        assert len(replaced & workers) == 1
        for _ in range(4):  # each worker of the queue group answers
            assert (await login(up.url, "admin", up.admin_password)).status_code == 200

        assert await stop(up) == 0
        await until(lambda: not any(Path(f"/proc/{w}").exists() for w in replaced), 10)
        assert "exited with -9; restarting" in up.log.read_text()


async def test_a_worker_whose_nats_is_gone_still_stops_on_sigterm(tmp_path: Path) -> None:
    # What happens when up is SIGKILLed: its NATS dies with it, and its worker, reconnecting,
    # gets SIGTERM from the kernel (PR_SET_PDEATHSIG). nats-py will not drain a reconnecting
    # connection; the worker must still exit, not reconnect for ever as an orphan.
    async with running_up(tmp_path / "data", free_port()) as up:
        [worker] = worker_children(up.process.pid)
        [nats] = children(up.process.pid, b"nats-server")
        os.kill(nats, signal.SIGKILL)
        await until(lambda: "nats connection error (symphainy-runtime" in up.log.read_text())
        os.kill(worker, signal.SIGTERM)
        await until(lambda: gone(worker), 15)
        assert "no clean disconnect" in up.log.read_text()
