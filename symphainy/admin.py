"""``users`` and ``sessions``: operator commands that act through intents, like everything else."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from nats.aio.client import Client
from pydantic import SecretStr, ValidationError

from bus.connection import BusGuard, PermissionDenied, connection_options
from bus.identity import IdentityError, NatsIdentity, identity_for
from bus.permissions import Role
from bus.settings import Settings
from intents import (
    CreateUser,
    CreateUserReply,
    ListSessions,
    ListSessionsReply,
    ListUsers,
    ListUsersReply,
    RemoveUser,
    RemoveUserReply,
    Reply,
    RevokeSession,
    RevokeSessionReply,
    RuntimeUnavailable,
    SessionNotFound,
    SetPassword,
    SetPasswordReply,
    SymphainyError,
)
from intents.request import ask
from symphainy import first_run

ACTOR = "cli"
CONNECT_TIMEOUT_S = 3.0


class CommandError(Exception):
    """A failure to report in one line."""


async def command(settings: Settings, args: argparse.Namespace) -> int:
    """Run one ``users``/``sessions`` command; the exit code."""
    try:
        # Asked before connecting: a missing terminal is the caller's to fix, NATS or not.
        if (args.command, args.action) in TAKES_PASSWORD:
            args.password = SecretStr(_read_password(args.password_stdin))
        identity = identity_for(settings, Role.ADMIN)
        guard = BusGuard(identity)
        nc = await _connect(identity, guard)
    except (CommandError, IdentityError, PermissionDenied) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        handler = HANDLERS[(args.command, args.action)]
        for line in await guard.run(handler(nc, settings, args)):
            print(line)
    except RuntimeUnavailable:
        print(f"error: no runtime worker is answering on {identity.url}", file=sys.stderr)
        return 1
    except (SymphainyError, CommandError, PermissionDenied) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await nc.close()
    return 0


async def _connect(identity: NatsIdentity, guard: BusGuard) -> Client:
    url = identity.url
    options = connection_options("symphainy-cli", identity, guard)
    options |= {"connect_timeout": CONNECT_TIMEOUT_S, "allow_reconnect": False}

    async def quiet(exc: Exception) -> None:
        guard.record(exc)

    options["error_cb"] = quiet
    nc = Client()
    try:
        # nats-py keeps retrying an initial connect that is refused; bound it ourselves.
        await asyncio.wait_for(guard.run(nc.connect(**options)), CONNECT_TIMEOUT_S)
        return nc
    except PermissionDenied:
        await nc.close()
        raise
    except TimeoutError as exc:
        raise CommandError(f"cannot reach NATS at {url} (is symphainy up?)") from exc
    except Exception as exc:
        raise CommandError(f"cannot reach NATS at {url} ({exc or type(exc).__name__})") from exc


async def _call(nc: Client, settings: Settings, intent_factory: object, **fields: object) -> Reply:
    try:
        intent = intent_factory(actor=ACTOR, **fields)  # type: ignore[operator]
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise CommandError(problems) from exc
    return await ask(nc, intent, settings.request_timeout_s)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise CommandError("no terminal to ask for the password: pass --password-stdin")
        try:
            password = getpass.getpass("password: ")
            again = getpass.getpass("again: ")
        except EOFError as exc:
            raise CommandError("no password given") from exc
        if again != password:
            raise CommandError("the passwords differ")
    if not password:
        raise CommandError("empty password")
    return password


async def users_add(nc: Client, settings: Settings, args: argparse.Namespace) -> list[str]:
    """Add a user."""
    reply = await _call(nc, settings, CreateUser, username=args.name, password=args.password)
    assert isinstance(reply, CreateUserReply)
    return [f"added user {reply.user.username} ({reply.user.id})"]


async def users_passwd(nc: Client, settings: Settings, args: argparse.Namespace) -> list[str]:
    """Set a user's password; their sessions are revoked."""
    reply = await _call(nc, settings, SetPassword, username=args.name, password=args.password)
    assert isinstance(reply, SetPasswordReply)
    revoked = len(reply.revoked_sessions)
    lines = [f"changed the password of {reply.user.username}; revoked {revoked} session(s)"]
    if forgotten := first_run.forget_password(settings, reply.user.username):
        lines.append(f"removed {forgotten}: it held the old password")
    return lines


async def users_list(nc: Client, settings: Settings, args: argparse.Namespace) -> list[str]:
    """List users."""
    reply = await _call(nc, settings, ListUsers)
    assert isinstance(reply, ListUsersReply)
    # ISSUER: the OpenID provider a user logs in through; "-" for a local user (a password).
    lines = [f"{'USERNAME':<24} {'ID':<32} {'CREATED':<19} ISSUER"]
    lines += [
        f"{u.username:<24} {u.id:<32} {u.created_at:%Y-%m-%d %H:%M:%S} {u.issuer or '-'}"
        for u in reply.users
    ]
    return lines


async def users_remove(nc: Client, settings: Settings, args: argparse.Namespace) -> list[str]:
    """Remove a user; their sessions are revoked."""
    reply = await _call(nc, settings, RemoveUser, username=args.name)
    assert isinstance(reply, RemoveUserReply)
    revoked = len(reply.revoked_sessions)
    return [f"removed user {reply.user.username}; revoked {revoked} session(s)"]


async def sessions_list(nc: Client, settings: Settings, args: argparse.Namespace) -> list[str]:
    """List sessions, live ones unless ``--all``."""
    reply = await _call(nc, settings, ListSessions, username=args.user, include_inactive=args.all)
    assert isinstance(reply, ListSessionsReply)
    lines = [f"{'SESSION':<32} {'USER':<16} {'STATE':<8} {'CREATED':<19} EXPIRES"]
    lines += [
        f"{s.session_id:<32} {s.username:<16} {s.state:<8} "
        f"{s.created_at:%Y-%m-%d %H:%M:%S} {s.expires_at:%Y-%m-%d %H:%M:%S}"
        for s in reply.sessions
    ]
    return lines


async def sessions_revoke(nc: Client, settings: Settings, args: argparse.Namespace) -> list[str]:
    """Revoke one session; its sockets close with 4404."""
    try:
        reply = await _call(
            nc, settings, RevokeSession, session_id=args.session_id, reason="revoked by operator"
        )
    except CommandError as exc:
        raise SessionNotFound(f"no session {args.session_id}") from exc
    assert isinstance(reply, RevokeSessionReply)
    return [f"session {reply.session.session_id} is {reply.session.state}"]


TAKES_PASSWORD = {("users", "add"), ("users", "passwd")}
HANDLERS = {
    ("users", "add"): users_add,
    ("users", "passwd"): users_passwd,
    ("users", "list"): users_list,
    ("users", "remove"): users_remove,
    ("sessions", "list"): sessions_list,
    ("sessions", "revoke"): sessions_revoke,
}
