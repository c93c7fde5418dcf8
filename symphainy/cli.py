"""Argument parsing: each command only turns flags into ``Settings`` and calls one function.

symphainy up | runtime | experience
symphainy users add NAME [--password-stdin] | users passwd NAME [--password-stdin]
symphainy users list | users remove NAME
symphainy sessions list [--user NAME] [--all] | sessions revoke ID
symphainy nats-context ROLE | nats-setup --url URL [--tls-host NAME ...]
symphainy intents tail [--family F] [--correlation-id ID]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bus.permissions import Role
from bus.settings import Settings
from symphainy import admin, bus_setup, logs, run, tail

log = logging.getLogger(__name__)

# Flags that map one to one onto settings fields.
SETTING_FLAGS = (
    "host", "port", "data_dir", "nats_url", "nats_context", "nats_port", "workers", "dev_mode",
    "metrics_port",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="symphainy", description="Sessions and intents over NATS."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="the whole system on this machine, NATS embedded")
    _serving(up)
    _runtime(up)
    up.add_argument(
        "--dev",
        dest="dev_mode",
        action="store_true",
        default=None,
        help="development mode: allows placeholder signing keys",
    )
    up.add_argument("--nats-url", help="use this NATS instead of starting the embedded one")
    up.add_argument("--nats-port", type=int, help="embedded NATS port (default 4222)")
    up.add_argument("--data-dir", type=Path, help="data directory (default ./.symphainy)")

    runtime = commands.add_parser("runtime", help="runtime worker(s) against --nats-url")
    _runtime(runtime)
    _nats(runtime)

    experience = commands.add_parser("experience", help="the Experience Plane against --nats-url")
    _serving(experience)
    _nats(experience)
    for component in (up, runtime, experience):
        component.add_argument(
            "--metrics-port",
            type=int,
            help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics (default: off)",
        )
    for component in (runtime, experience):
        component.add_argument(
            "--dev",
            dest="dev_mode",
            action="store_true",
            default=None,
            help="development mode: allows placeholder signing keys",
        )

    users = commands.add_parser("users", help="manage users").add_subparsers(
        dest="action", required=True
    )
    add = users.add_parser("add", help="add a user (password from a prompt or stdin)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _nats(add)
    passwd = users.add_parser(
        "passwd", help="set a user's password (prompt or stdin) and revoke their sessions"
    )
    passwd.add_argument("name")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    _nats(passwd)
    _nats(users.add_parser("list", help="list users"))
    remove = users.add_parser("remove", help="remove a user and revoke their sessions")
    remove.add_argument("name")
    _nats(remove)

    sessions = commands.add_parser("sessions", help="inspect and revoke sessions").add_subparsers(
        dest="action", required=True
    )
    listing = sessions.add_parser("list", help="list live sessions")
    listing.add_argument("--user", help="only this user's sessions")
    listing.add_argument("--all", action="store_true", help="include revoked and expired ones")
    _nats(listing)
    revoke = sessions.add_parser("revoke", help="revoke one session")
    revoke.add_argument("session_id")
    _nats(revoke)

    intents = commands.add_parser("intents", help="watch intents on the bus").add_subparsers(
        dest="action", required=True
    )
    tailing = intents.add_parser(
        "tail", help="intents and audit records as they come, one line each (as inspector)"
    )
    tailing.add_argument("--family", help="only this family: session, user, system, agent...")
    tailing.add_argument("--correlation-id", help="only intents with this correlation id")
    _nats(tailing)

    context = commands.add_parser(
        "nats-context", help="print a role's NATS CLI context (JSON) from the data directory"
    )
    context.add_argument("role", choices=[role.value for role in Role])
    context.add_argument("--data-dir", type=Path, help="data directory (default ./.symphainy)")

    setup = commands.add_parser(
        "nats-setup",
        help="write nats-server's configuration and every role's context (for deployments)",
    )
    setup.add_argument("--url", required=True, help="the URL clients use, e.g. nats://nats:4222")
    setup.add_argument(
        "--tls-host",
        action="append",
        default=[],
        help="turn TLS on with a certificate for this host name (repeatable)",
    )
    setup.add_argument("--data-dir", type=Path, help="where to write (default ./.symphainy)")
    return parser


def _nats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats-url", help="NATS to use (default: the context's, else nats://127.0.0.1:4222)"
    )
    parser.add_argument(
        "--nats-context",
        type=Path,
        help="this component's NATS identity, a NATS CLI context file "
        "(default: the data directory's, as symphainy up wrote it)",
    )
    parser.add_argument("--data-dir", type=Path, help="data directory (default ./.symphainy)")


def _serving(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to serve HTTP on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to serve HTTP on (default 8000; 0 = any)")


def _runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, help="runtime workers to start (default 1)")


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings: flags first, then ``SYMPHAINY_*`` variables, then ``.env``, then defaults."""
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in SETTING_FLAGS if getattr(args, name, None) is not None
    }
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the process exit code. Every failure is one line on stderr."""
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"error: invalid settings: {_one_line(exc)}", file=sys.stderr)
        return 2
    serving = args.command in ("up", "runtime", "experience")
    debug = settings.log_level.upper() == "DEBUG"
    try:
        level = settings.log_level if serving or debug else logging.WARNING
        logs.configure(level, settings.log_format)
        return _run(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A bug, not bad input: still one line; the traceback only when asked for.
        log.debug("%s failed", args.command, exc_info=True)
        print(
            f"error: unexpected {type(exc).__name__}: {logs.escape(str(exc))} "
            "(SYMPHAINY_LOG_LEVEL=DEBUG logs the traceback)",
            file=sys.stderr,
        )
        return 1


def _one_line(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'settings'}: {e['msg']}"
        for e in exc.errors()
    )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "up":
        return run.main(run.up(settings, embedded=args.nats_url is None))
    if args.command == "runtime":
        return run.main(run.runtime(settings))
    if args.command == "experience":
        return run.main(run.experience(settings))
    if args.command == "nats-context":
        return bus_setup.print_context(settings, Role(args.role))
    if args.command == "nats-setup":
        return bus_setup.setup(settings, args.url, args.tls_host)
    if args.command == "intents":
        return asyncio.run(tail.run(settings, tail.Filter(args.family, args.correlation_id)))
    return asyncio.run(admin.command(settings, args))
