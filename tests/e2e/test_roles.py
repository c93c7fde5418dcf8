"""Components started with the wrong NATS identity, as an operator could start them by mistake:
each exits at once with a message naming what nats-server refused, never a hang."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bus.permissions import Role
from tests.backends import NatsServer
from tests.e2e.test_up import symphainy
from tests.secure import SecureBus

pytestmark = pytest.mark.usefixtures("expect_violations")


@pytest.mark.parametrize(
    ("command", "role"),
    [
        (["runtime"], Role.EXPERIENCE),
        (["runtime"], Role.INSPECTOR),
        (["experience", "--port", "0", "--dev", "--data-dir", "web"], Role.ADMIN),
        (["users", "list"], Role.INSPECTOR),
        (["users", "remove", "bob"], Role.EXPERIENCE),
    ],
    ids=lambda v: v.value if isinstance(v, Role) else v[0],
)
async def test_a_component_with_another_roles_identity_fails_at_start_naming_the_permission(
    nats_server: NatsServer,
    bus_secrets: SecureBus,
    tmp_path: Path,
    command: list[str],
    role: Role,
) -> None:
    code, _, err = await symphainy(
        tmp_path, *command, "--nats-context", str(bus_secrets.context(role))
    )
    assert code == 1
    assert f"NATS user '{role.value}' lacks a permission" in err
    assert "permissions violation for " in err


async def test_wrong_or_missing_credentials_are_refused_clearly(
    nats_server: NatsServer, bus_secrets: SecureBus, tmp_path: Path
) -> None:
    stolen = json.loads(bus_secrets.context(Role.ADMIN).read_text())
    guessed = tmp_path / "guessed.json"
    guessed.write_text(json.dumps(stolen | {"password": "guess"}))
    code, _, err = await symphainy(tmp_path, "users", "list", "--nats-context", str(guessed))
    assert code == 1
    assert "refused the credentials of 'admin'" in err
    # No context anywhere (an empty data directory): anonymous, refused.
    code, _, err = await symphainy(tmp_path, "users", "list", "--nats-url", nats_server.url)
    assert code == 1
    assert "refused the credentials of 'anonymous'" in err
    assert "Traceback" not in err


async def test_nats_context_prints_what_the_nats_cli_reads(
    nats_server: NatsServer, bus_secrets: SecureBus, tmp_path: Path
) -> None:
    code, out, _ = await symphainy(
        tmp_path, "nats-context", "inspector", "--data-dir", str(bus_secrets.data_dir)
    )
    assert code == 0
    context = json.loads(out)
    assert context["url"] == nats_server.url
    assert context["user"] == "inspector"
    assert context["password"]
    # The printed context is one a symphainy command takes as its identity, too.
    printed = tmp_path / "inspector.json"
    printed.write_text(out)
    code, _, err = await symphainy(tmp_path, "users", "list", "--nats-context", str(printed))
    assert code == 1
    assert "lacks a permission" in err  # the inspector may not list users: that is admin's
    code, _, err = await symphainy(tmp_path, "nats-context", "runtime", "--data-dir", "nowhere")
    assert code == 1
    assert "no NATS context for runtime" in err
