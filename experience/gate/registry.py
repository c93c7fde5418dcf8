"""Live sockets of one gate process, by session and user, with the per-session/user limits.

The registry also remembers sessions it has recently seen end, so a socket admitted a moment
before its session's revocation reached this gate is still closed.
"""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict

from experience.gate.connection import Connection
from experience.gate.protocol import CloseCode

RECENTLY_ENDED_TTL_S = 120.0
RECENTLY_ENDED_MAX = 100_000


class LimitExceeded(Exception):
    """Too many sockets for the session or the user."""


class Registry:
    """Sockets by session id and by socket id."""

    def __init__(self, max_per_session: int, max_per_user: int) -> None:
        self._max_per_session = max_per_session
        self._max_per_user = max_per_user
        self._by_session: dict[str, set[Connection]] = defaultdict(set)
        self._by_socket: dict[str, Connection] = {}
        self._per_user: dict[str, int] = defaultdict(int)
        self._ended: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_socket)

    def check_limits(self, session_id: str, user_id: str) -> None:
        """Raise ``LimitExceeded`` if one more socket would break a limit."""
        if len(self._by_session.get(session_id, ())) >= self._max_per_session:
            raise LimitExceeded("too many sockets for this session")
        if self._per_user.get(user_id, 0) >= self._max_per_user:
            raise LimitExceeded("too many sockets for this user")

    def add(self, conn: Connection) -> None:
        """Register an admitted socket; closes it at once if its session just ended."""
        self.check_limits(conn.session_id, conn.user_id)
        self._by_session[conn.session_id].add(conn)
        self._by_socket[conn.socket_id] = conn
        self._per_user[conn.user_id] += 1
        ended = self._recently_ended(conn.session_id)
        if ended is not None:
            conn.close(ended, "session ended")

    def remove(self, conn: Connection) -> None:
        """Forget a socket that has closed."""
        if self._by_socket.pop(conn.socket_id, None) is None:
            return
        peers = self._by_session.get(conn.session_id)
        if peers is not None:
            peers.discard(conn)
            if not peers:
                del self._by_session[conn.session_id]
        self._per_user[conn.user_id] -= 1
        if self._per_user[conn.user_id] <= 0:
            del self._per_user[conn.user_id]

    def get(self, socket_id: str) -> Connection | None:
        """The socket with this id, if it is still open here."""
        return self._by_socket.get(socket_id)

    def session_ended(self, session_id: str, code: int = CloseCode.SESSION_GONE) -> int:
        """Close every socket of the session with ``code``; how many were closed."""
        self._remember(session_id, code)
        peers = list(self._by_session.get(session_id, ()))
        for conn in peers:
            conn.close(code, "session ended")
        return len(peers)

    def close_all(self, code: int, reason: str) -> list[Connection]:
        """Ask every socket to close (shutdown); the connections asked."""
        conns = list(self._by_socket.values())
        for conn in conns:
            conn.close(code, reason)
        return conns

    def _remember(self, session_id: str, code: int) -> None:
        self._ended[session_id] = (time.monotonic(), code)
        self._ended.move_to_end(session_id)
        while len(self._ended) > RECENTLY_ENDED_MAX:
            self._ended.popitem(last=False)

    def _recently_ended(self, session_id: str) -> int | None:
        seen = self._ended.get(session_id)
        if seen is None:
            return None
        at, code = seen
        if time.monotonic() - at > RECENTLY_ENDED_TTL_S:
            del self._ended[session_id]
            return None
        return code
