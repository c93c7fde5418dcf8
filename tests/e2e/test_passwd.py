"""``symphainy users passwd``: the reset an operator does when a password may be known."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.test_up import free_port, login, running_up, stop, symphainy

OLD, NEW = b"bob's old password\n", b"bob's new password\n"


async def test_passwd_resets_the_password_and_revokes_every_session(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with running_up(data_dir, free_port()) as up:
        cli = ("--data-dir", "data")
        code, _, err = await symphainy(
            tmp_path, "users", "add", "bob", "--password-stdin", *cli, stdin=OLD
        )
        assert code == 0, err
        tokens = []
        for _ in range(2):
            opened = await login(up.url, "bob", OLD.decode().strip())
            assert opened.status_code == 200
            tokens.append(opened.json()["session_token"])

        code, out, err = await symphainy(
            tmp_path, "users", "passwd", "bob", "--password-stdin", *cli, stdin=NEW
        )
        assert (code, err) == (0, "")
        assert out == "changed the password of bob; revoked 2 session(s)\n"

        assert (await login(up.url, "bob", OLD.decode().strip())).status_code == 401
        assert (await login(up.url, "bob", NEW.decode().strip())).status_code == 200
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=up.url, headers=headers) as http:
                assert (await http.get("/api/sessions")).status_code == 401

        code, out, err = await symphainy(
            tmp_path, "users", "passwd", "nobody", "--password-stdin", *cli, stdin=NEW
        )
        assert (code, out) == (1, "")
        assert err.splitlines() == ["error: no user 'nobody'"]
        assert await stop(up) == 0


async def test_passwd_of_admin_removes_the_first_start_password_file(tmp_path: Path) -> None:
    data_dir, nats_port = tmp_path / "data", free_port()
    password_file = data_dir / "admin-password"
    async with running_up(data_dir, nats_port) as up:
        assert password_file.exists()
        code, out, err = await symphainy(
            tmp_path, "users", "passwd", "admin", "--password-stdin", "--data-dir", "data",
            stdin=b"a password the operator chose\n",
        )  # fmt: skip
        assert code == 0, err
        assert out.splitlines() == [
            "changed the password of admin; revoked 0 session(s)",
            f"removed {password_file}: it held the old password",
        ]
        assert not password_file.exists()
        assert (await login(up.url, "admin", "a password the operator chose")).status_code == 200
        assert await stop(up) == 0
    async with running_up(data_dir, nats_port) as again:
        assert again.admin_line is None, "no file, nothing to point at"
        assert await stop(again) == 0
