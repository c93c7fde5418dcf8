"""compose.yaml is valid Compose v2 and declares the services the deployment needs."""

from __future__ import annotations

from tests.deploy.compose import resolved_config, run_compose, traefik_routers


def test_compose_file_is_valid() -> None:
    result = run_compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_signing_keys_are_required_not_defaulted() -> None:
    result = run_compose("config", "-q", env={"SYMPHAINY_JWT_KEYS": ""})
    assert result.returncode != 0
    assert "SYMPHAINY_JWT_KEYS" in result.stderr


def test_services_replicas_and_storage() -> None:
    services = resolved_config()["services"]
    assert set(services) == {"nats", "runtime", "experience", "traefik"}
    assert services["runtime"]["deploy"]["replicas"] == 2
    assert services["experience"]["deploy"]["replicas"] == 2
    assert "--jetstream" in services["nats"]["command"]
    assert any(v["target"] == "/data" for v in services["nats"]["volumes"])
    assert traefik_routers(services["experience"]["labels"])
