"""Pure parts of the WebSocket gate: credentials, origins, the registry, the bounded outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.datastructures import Headers

from experience.gate.admission import Malformed, origin_allowed, read_credentials
from experience.gate.connection import Connection
from experience.gate.protocol import CloseCode
from experience.gate.registry import LimitExceeded, Registry

EXP = datetime(2030, 1, 1, tzinfo=UTC)


def scope(subprotocols: list[str] | None = None, query: str = "") -> dict[str, Any]:
    return {"type": "websocket", "subprotocols": subprotocols or [], "query_string": query.encode()}


def test_token_from_subprotocol_pair() -> None:
    assert read_credentials(scope(["symphainy.v1", "bearer.abc.def"])) == (
        "symphainy.v1",
        "abc.def",
    )


def test_token_from_query_string() -> None:
    assert read_credentials(scope(query="session_token=abc.def")) == (None, "abc.def")


def test_no_token() -> None:
    assert read_credentials(scope()) == (None, None)
    assert read_credentials(scope(["symphainy.v1"])) == ("symphainy.v1", None)


@pytest.mark.parametrize(
    ("subprotocols", "query"),
    [
        (["chat"], ""),
        (["symphainy.v1", "bearer.a", "bearer.b"], ""),
        ([], "session_token=a&session_token=b"),
    ],
)
def test_malformed_handshakes(subprotocols: list[str], query: str) -> None:
    with pytest.raises(Malformed):
        read_credentials(scope(subprotocols, query))


def test_same_origin_by_default() -> None:
    same = Headers({"host": "app.example:8000", "origin": "http://app.example:8000"})
    other = Headers({"host": "app.example:8000", "origin": "http://evil.example"})
    assert origin_allowed(same, [])
    assert not origin_allowed(other, [])
    assert origin_allowed(Headers({"host": "x"}), [])  # not a browser: no Origin header
    assert origin_allowed(other, ["http://evil.example"])
    assert not origin_allowed(same, ["http://only.example"])


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[str] = []


def conn(socket_id: str, session: str = "s1", user: str = "u1", queue: int = 4) -> Connection:
    return Connection(
        FakeSocket(),  # type: ignore[arg-type]
        socket_id=socket_id,
        session_id=session,
        user_id=user,
        token_exp=EXP,
        session_expires_at=EXP,
        queue_size=queue,
        max_in_flight=4,
    )


def test_registry_limits_and_removal() -> None:
    registry = Registry(max_per_session=2, max_per_user=3)
    a, b = conn("a"), conn("b")
    registry.add(a)
    registry.add(b)
    with pytest.raises(LimitExceeded):
        registry.add(conn("c"))
    registry.add(conn("d", session="s2"))
    with pytest.raises(LimitExceeded):
        registry.check_limits("s3", "u1")
    registry.remove(a)
    registry.remove(a)  # twice is harmless
    registry.check_limits("s1", "u1")
    assert len(registry) == 2


def test_session_end_closes_its_sockets_only() -> None:
    registry = Registry(8, 8)
    mine, also_mine, other = conn("a"), conn("b"), conn("c", session="s2")
    for c in (mine, also_mine, other):
        registry.add(c)
    assert registry.session_ended("s1", CloseCode.SESSION_GONE) == 2
    assert mine.close_code == also_mine.close_code == CloseCode.SESSION_GONE
    assert other.close_code is None


def test_socket_admitted_just_after_its_session_ended_is_closed() -> None:
    registry = Registry(8, 8)
    registry.session_ended("s1", CloseCode.EXPIRED)
    late = conn("late")
    registry.add(late)
    assert late.close_code == CloseCode.EXPIRED


def test_slow_client_is_closed_not_buffered() -> None:
    c = conn("slow", queue=3)
    for i in range(3):
        c.send({"n": i})
    assert not c.closing
    c.send({"n": 3})
    assert c.close_code == CloseCode.TOO_MANY
    c.send({"n": 4})  # ignored once closing
    assert c._outbox.qsize() == 3


def test_first_close_wins() -> None:
    c = conn("x")
    c.close(CloseCode.SESSION_GONE)
    c.close(CloseCode.GOING_AWAY)
    assert c.close_code == CloseCode.SESSION_GONE
