"""The first start: a system with no users gets ``admin``, whose password waits in a file.

The password is written to ``<data dir>/admin-password`` (mode 0600) before the user is created,
so no failed or interrupted start can lose it, and every start says where it is for as long as
the file is there. ``symphainy users passwd admin`` removes the file: it would be stale.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from bus.connection import connect
from bus.files import write_atomic
from bus.identity import identity_for
from bus.permissions import Role
from bus.settings import Settings
from intents import CreateUser, CreateUserReply, ListUsers, ListUsersReply, UserExists
from intents.request import ask

ADMIN = "admin"
PASSWORD_FILE = "admin-password"
ACTOR = "symphainy-up"


def password_path(settings: Settings) -> Path:
    """Where the first start leaves the admin password."""
    return (settings.data_dir / PASSWORD_FILE).absolute()


async def ensure_admin(settings: Settings) -> str | None:
    """On a system with no users, create ``admin`` with a random password kept in a 0600 file.

    Returns the line to show: where the password is (also on later starts, while the file and
    the user exist), or None.
    """
    path = password_path(settings)
    nc = await connect(identity_for(settings, Role.ADMIN), ACTOR)
    try:
        users = await ask(nc, ListUsers(actor=ACTOR), settings.request_timeout_s)
        assert isinstance(users, ListUsersReply)
        if users.users:
            if path.exists() and any(u.username == ADMIN for u in users.users):
                return f"user {ADMIN}: its password is in {path} (delete it once kept elsewhere)"
            return None
        password = secrets.token_urlsafe(18)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, password + "\n")
        try:
            created = await ask(
                nc,
                CreateUser(username=ADMIN, password=password, actor=ACTOR),
                settings.request_timeout_s,
            )
            assert isinstance(created, CreateUserReply)
        except UserExists:
            # Another ``up`` on the same bus got there first; its password is the one in use.
            return None
        return f"created user {ADMIN}: its password is in {path}"
    finally:
        await nc.close()


def forget_password(settings: Settings, username: str) -> Path | None:
    """Remove the first start's password file after ``admin``'s password changed; its path."""
    path = password_path(settings)
    if username.lower() != ADMIN or not path.exists():
        return None
    path.unlink(missing_ok=True)
    return path
