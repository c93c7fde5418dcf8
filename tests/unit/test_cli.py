"""Command-line parsing: flags become settings, and flags win over the environment."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from symphainy import admin, cli, logs
from symphainy.cli import build_parser, settings_from


def test_up_flags_become_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(
        ["up", "--port", "0", "--nats-port", "4333", "--data-dir", "d", "--workers", "3", "--dev"]
    )
    settings = settings_from(args)
    assert (settings.port, settings.nats_port, settings.workers) == (0, 4333, 3)
    assert settings.data_dir == Path("d")
    assert settings.dev_mode is True
    assert args.nats_url is None


def test_flags_win_over_environment_which_wins_over_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYMPHAINY_PORT", "9000")
    monkeypatch.setenv("SYMPHAINY_WORKERS", "2")
    settings = settings_from(build_parser().parse_args(["up", "--port", "9100"]))
    assert settings.port == 9100
    assert settings.workers == 2
    assert settings.host == "127.0.0.1"


def test_dot_env_is_read_from_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SYMPHAINY_NATS_URL=nats://127.0.0.1:5222\n")
    settings = settings_from(build_parser().parse_args(["users", "list"]))
    assert settings.nats_url == "nats://127.0.0.1:5222"


@pytest.mark.parametrize(
    "argv",
    [
        ["runtime", "--nats-url", "nats://h:4222", "--workers", "2"],
        ["experience", "--nats-url", "nats://h:4222", "--host", "0.0.0.0", "--port", "8001"],
        ["users", "add", "bob", "--password-stdin"],
        ["users", "passwd", "bob", "--password-stdin"],
        ["users", "passwd", "bob", "--nats-context", "ctx.json", "--data-dir", "d"],
        ["users", "remove", "bob"],
        ["sessions", "list", "--user", "bob", "--all"],
        ["sessions", "revoke", "0" * 32],
    ],
)
def test_every_command_parses(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    settings_from(build_parser().parse_args(argv))


def test_a_command_is_required() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([])


def test_an_unexpected_failure_is_one_line_and_exit_code_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(*_: object) -> int:
        raise RuntimeError("bad\nthing")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(admin, "command", broken)
    # The process's log handler stays out of the test process.
    monkeypatch.setattr(logs, "configure", lambda level, log_format="text": logging.NullHandler())
    assert cli.main(["users", "list"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: unexpected RuntimeError: bad\\nthing (SYMPHAINY_LOG_LEVEL=DEBUG logs the traceback)"
    ]
