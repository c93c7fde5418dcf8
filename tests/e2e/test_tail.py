"""``symphainy intents tail`` against the real ``symphainy up``, read line by line from a pipe."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.e2e.test_up import _env, free_port, login, running_up

DEADLINE_S = 15
WRONG = "a wrong password, never shown"


@asynccontextmanager
async def tailing(cwd: Path, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``symphainy intents tail ARGS`` with stdout piped, once it says it is subscribed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "symphainy", "intents", "tail", "--data-dir", "data", *args,
        cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_env(),
    )  # fmt: skip
    try:
        assert process.stderr is not None
        ready = await asyncio.wait_for(process.stderr.readline(), DEADLINE_S)
        assert ready.startswith(b"tailing intents and audit records on nats://"), ready
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def lines_until(process: asyncio.subprocess.Process, last: re.Pattern[str]) -> list[str]:
    """Lines of the tail as they come, up to the first that matches ``last``."""
    assert process.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(DEADLINE_S):
        while not seen or not last.search(seen[-1]):
            line = await process.stdout.readline()
            assert line, f"tail ended: {seen}"
            seen.append(line.decode().rstrip("\n"))
    return seen


async def stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGINT)
    return await asyncio.wait_for(process.wait(), DEADLINE_S)


async def test_tail_shows_intents_outcomes_and_latency_never_passwords(tmp_path: Path) -> None:
    async with running_up(tmp_path / "data", free_port()) as up:
        assert up.admin_password is not None
        async with (
            tailing(tmp_path) as everything,
            tailing(tmp_path, "--family", "session", "--correlation-id", "watched-1") as one,
        ):
            assert (await login(up.url, "admin", WRONG)).status_code == 401
            logged_in = await login(up.url, "admin", up.admin_password)
            assert logged_in.status_code == 200
            token = logged_in.json()["session_token"]
            async with httpx.AsyncClient(base_url=up.url) as http:
                headers = {"Authorization": f"Bearer {token}", "X-Correlation-Id": "watched-1"}
                assert (await http.get("/api/sessions", headers=headers)).status_code == 200
                logout = await http.post("/api/auth/logout", headers=headers)
                assert logout.status_code == 204
            revoked = re.compile(r"^\S+ audit  intents\.session\.revoke ")
            seen = await lines_until(everything, revoked)
            only = await lines_until(one, revoked)
            assert await stop(everything) == 0
            assert await stop(one) == 0
    text = "\n".join(seen + only)
    assert up.admin_password not in text
    assert WRONG not in text
    # Intents on credentials.* are never seen (the inspector may not), only their audit records.
    assert not any(" intent credentials." in line for line in seen)
    time = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    ids = r"corr=[0-9a-f]{32} id=[0-9a-f]{32}"
    auth = rf"^{time} audit  credentials\.user\.authenticate AuthenticateUser {ids}"
    assert any(re.match(rf"{auth} invalid_credentials [\d.]+m?s since issued$", x) for x in seen)
    assert any(re.match(rf"{auth} ok [\d.]+m?s since issued$", x) for x in seen)
    create = rf"^{time} (intent|audit ) intents\.session\.create CreateSession {ids}"
    assert [x.split()[1] for x in seen if re.match(create, x)] == ["intent", "audit"], text
    # The requests with our correlation id: a listing and a logout, each verifying the session
    # first. Successful reads (verify, list) are counted, not audited: only their intent shows;
    # the revocation is audited with its outcome and the latency from sent to done. (A retry-safe
    # intent unanswered for half its deadline is sent once more, same id: a line may repeat.)
    watched = [x for x in seen if "corr=watched-1 " in x]
    assert distinct([x.split()[1:4] for x in watched]) == [
        ["intent", "intents.session.verify", "VerifySession"],
        ["intent", "intents.session.list", "ListSessions"],
        ["intent", "intents.session.revoke", "RevokeSession"],
        ["audit", "intents.session.revoke", "RevokeSession"],
    ], text
    audits = [x for x in watched if x.split()[1] == "audit"]
    assert len(audits) == 1, text
    assert all(re.search(r" ok \d+\.\dms( since issued)?$", x) for x in audits), text
    # The filtered tail printed exactly those lines (its latencies are its own).
    assert [x.split()[1:7] for x in only] == [x.split()[1:7] for x in watched], text


def distinct(items: list[list[str]]) -> list[list[str]]:
    """``items`` in order, each once."""
    return [item for i, item in enumerate(items) if item not in items[:i]]


async def test_tail_without_nats_is_one_line(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "symphainy", "intents", "tail", "--nats-url",
        f"nats://127.0.0.1:{free_port()}", cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), DEADLINE_S)
    assert process.returncode == 1
    assert out == b""
    assert err.decode().splitlines()[-1].startswith("error: cannot reach NATS")
