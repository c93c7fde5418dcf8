"""Argon2 password hashing (pwdlib), off the event loop, with a decoy for unknown users."""

from __future__ import annotations

import asyncio
import functools

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher


class Passwords:
    """Hash and verify passwords; ``verify_decoy`` costs what a real verification costs."""

    def __init__(self, hasher: PasswordHash | None = None) -> None:
        self._hasher = hasher or PasswordHash((Argon2Hasher(),))

    @functools.cached_property
    def _decoy_hash(self) -> str:
        return self._hasher.hash("decoy password for unknown users")

    async def warm(self) -> None:
        """Compute the decoy hash now, so the first unknown-user login costs no extra hash."""
        await asyncio.to_thread(lambda: self._decoy_hash)

    async def hash(self, password: str) -> str:
        """An argon2 hash of ``password``."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password: str, password_hash: str) -> bool:
        """Whether ``password`` matches ``password_hash``."""
        return await asyncio.to_thread(self._hasher.verify, password, password_hash)

    async def verify_decoy(self, password: str) -> None:
        """Spend the time of one verification, so unknown users cannot be told apart."""
        await asyncio.to_thread(self._hasher.verify, password, self._decoy_hash)
