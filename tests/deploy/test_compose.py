"""compose.yaml is valid Compose v2 and declares the services the deployment needs.

NATS requires a login per role: ``nats-setup`` writes the server configuration and every role's
context into the ``nats-secrets`` volume (the layout ``bus.provision`` writes), and each
component mounts only its own role's folder of it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from bus.identity import CONTEXT_FILE, context_path, secrets_dir
from bus.permissions import Role
from bus.provision import SERVER_CONFIG
from tests.deploy.compose import REPO, resolved_config, run_compose, traefik_routers

SECRETS_VOLUME = "nats-secrets"
# Services that see the whole secrets volume; every other one gets one role's folder at most.
WHOLE_SECRETS = {"nats-setup", "nats"}
# The components and the role each connects as.
COMPONENT_ROLES = {"runtime": Role.RUNTIME, "experience": Role.EXPERIENCE, "admin": Role.ADMIN}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """Every service, the on-demand ``tools`` profile included."""
    services: dict[str, Any] = resolved_config("tools")["services"]
    return services


def secret_mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in service.get("volumes", []) if v.get("source") == SECRETS_VOLUME]


def flag_value(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def setup_words(services: dict[str, Any]) -> list[str]:
    """nats-setup's shell script, as words."""
    return shlex.split(" ".join(services["nats-setup"]["command"]))


def setup_data_dir(services: dict[str, Any]) -> Path:
    words = setup_words(services)
    assert "nats-setup" in words
    return Path(flag_value(words, "--data-dir"))


def test_compose_file_is_valid() -> None:
    result = run_compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_signing_keys_are_required_not_defaulted() -> None:
    result = run_compose("config", "-q", env={"SYMPHAINY_JWT_KEYS": ""})
    assert result.returncode != 0
    assert "SYMPHAINY_JWT_KEYS" in result.stderr


def test_services_replicas_and_storage() -> None:
    services = resolved_config()["services"]
    assert set(services) == {"nats-setup", "nats", "runtime", "experience", "traefik"}
    assert services["runtime"]["deploy"]["replicas"] == 2
    assert services["experience"]["deploy"]["replicas"] == 2
    assert "--jetstream" in services["nats"]["command"]
    assert any(v["target"] == "/data" for v in services["nats"]["volumes"])
    assert traefik_routers(services["experience"]["labels"])


def test_admin_tool_is_on_demand_only(services: dict[str, Any]) -> None:
    assert services["admin"]["profiles"] == ["tools"]
    assert "admin" not in resolved_config()["services"]


def test_the_image_is_built_once(services: dict[str, Any]) -> None:
    builders = [name for name, s in services.items() if "build" in s]
    assert builders == ["nats-setup"]
    image = services["nats-setup"]["image"]
    for name in ("runtime", "experience", "admin"):
        assert services[name]["image"] == image


def test_nats_setup_writes_tls_secrets_into_the_volume(services: dict[str, Any]) -> None:
    setup = services["nats-setup"]
    words = setup_words(services)
    assert flag_value(words, "--url") == "nats://nats:4222"
    assert flag_value(words, "--tls-host") == "nats"
    (mount,) = secret_mounts(setup)
    assert not mount.get("read_only")
    assert not mount.get("volume", {}).get("subpath")
    assert setup_data_dir(services) == Path(mount["target"])
    # A one-shot job: restarting it would keep nats waiting forever.
    assert setup.get("restart", "no") == "no"


def test_nats_runs_with_the_generated_config(services: dict[str, Any]) -> None:
    nats = services["nats"]
    config = Path(flag_value(nats["command"], "-c"))
    assert config == secrets_dir(setup_data_dir(services)) / SERVER_CONFIG
    (mount,) = secret_mounts(nats)
    assert mount["read_only"] is True
    assert not mount.get("volume", {}).get("subpath")
    # nats.conf names the TLS files by absolute path: nats must mount where nats-setup wrote.
    assert Path(mount["target"]) == setup_data_dir(services)
    assert nats["depends_on"]["nats-setup"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", sorted(COMPONENT_ROLES))
def test_components_mount_only_their_role_folder(services: dict[str, Any], name: str) -> None:
    service = services[name]
    role = COMPONENT_ROLES[name]
    (mount,) = secret_mounts(service)
    assert mount["type"] == "volume"
    assert mount["read_only"] is True
    folder = context_path(Path(), role).parent  # relative: secrets/<role>
    assert mount["volume"]["subpath"] == str(folder)
    expected = str(Path(mount["target"]) / CONTEXT_FILE)
    command = service.get("command") or []
    if name == "admin":  # flags follow the subcommand a person types: the context comes by env
        assert service["environment"]["SYMPHAINY_NATS_CONTEXT"] == expected
    else:
        assert flag_value(command, "--nats-context") == expected
    assert "--nats-url" not in command


def test_containers_can_read_their_role_folder(services: dict[str, Any]) -> None:
    """nats-setup writes as root; every folder a component mounts is handed to the image's user."""
    words = setup_words(services)
    assert "chown" in words
    owned = words[words.index("chown") + 1 :]
    user = re.search(r"^USER\s+(\S+)", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert user is not None
    assert user.group(1) in {owned[0], owned[1]}
    data_dir = setup_data_dir(services)
    for name in COMPONENT_ROLES:
        (mount,) = secret_mounts(services[name])
        assert str(data_dir / mount["volume"]["subpath"]) in owned, name


def test_only_setup_and_nats_see_every_secret(services: dict[str, Any]) -> None:
    whole = {
        name
        for name, service in services.items()
        for mount in secret_mounts(service)
        if not mount.get("volume", {}).get("subpath")
    }
    assert whole == WHOLE_SECRETS
    for name, service in services.items():
        if name in WHOLE_SECRETS:
            continue
        for mount in secret_mounts(service):
            assert mount["read_only"] is True, name
            subpath = Path(mount["volume"]["subpath"])
            assert subpath.parent == secrets_dir(Path()), name
            assert subpath.name in {role.value for role in Role}, name
        # Nor a bind mount of secrets from the host.
        for mount in service.get("volumes", []):
            assert mount["type"] != "bind" or "secrets" not in mount["source"], name


def test_no_password_in_environment_or_command(services: dict[str, Any]) -> None:
    credentials_in_url = re.compile(r"://[^/@\s]+:[^/@\s]*@")
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            assert not re.search(r"PASS|NATS_USER|NATS_TOKEN|CREDS", key, re.IGNORECASE), name
            assert not credentials_in_url.search(value or ""), name
        for word in [*(service.get("entrypoint") or []), *(service.get("command") or [])]:
            assert not credentials_in_url.search(word), name
            assert not re.search(r"--(user|pass|password|token|creds)\b", word), name
