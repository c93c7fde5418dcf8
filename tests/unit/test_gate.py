"""Pure parts of the WebSocket gate: credentials, origins, the registry, the bounded outbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.datastructures import Headers

from bus.settings import Settings
from experience.gate.admission import Malformed, read_credentials
from experience.gate.connection import Connection
from experience.gate.protocol import CloseCode
from experience.gate.registry import LimitExceeded, Registry
from experience.hosts import HostPolicy

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


def policy(**overrides: Any) -> HostPolicy:
    return HostPolicy.from_settings(Settings(_env_file=None, **overrides))  # type: ignore[call-arg]


def test_same_origin_by_default() -> None:
    hosts = policy()
    same = Headers({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"})
    other = Headers({"host": "127.0.0.1:8000", "origin": "http://evil.example"})
    other_port = Headers({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:9999"})
    assert hosts.allows(same)
    assert not hosts.allows(other)
    assert not hosts.allows(other_port)
    assert hosts.allows(Headers({"host": "127.0.0.1:8000"}))  # not a browser: no Origin header
    listed = policy(allowed_origins=["http://front.example"])
    assert listed.allows(Headers({"host": "127.0.0.1", "origin": "http://front.example"}))
    assert listed.host_allowed("front.example")  # its page may be served by us too
    assert not listed.allows(other)
    assert not policy(allowed_origins=["http://only.example"]).allows(same)


def test_dns_rebinding_is_refused_although_origin_equals_host() -> None:
    rebound = Headers({"host": "evil.example:8000", "origin": "http://evil.example:8000"})
    assert not policy().allows(rebound)
    assert not policy().host_allowed("evil.example")


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "10.1.2.3", None]
)
def test_by_default_names_that_cannot_be_rebound_are_allowed(host: str | None) -> None:
    assert policy().host_allowed(host)
    assert policy(host="0.0.0.0").host_allowed(host)


def test_a_named_bind_host_is_allowed_and_no_other_name() -> None:
    hosts = policy(host="box.internal")
    assert hosts.host_allowed("box.internal:8000")
    assert not hosts.host_allowed("evil.example:8000")


def test_public_url_sets_the_host_and_the_origin() -> None:
    hosts = policy(public_url="https://app.example")
    assert hosts.allows(Headers({"host": "app.example", "origin": "https://app.example"}))
    assert not hosts.host_allowed("127.0.0.1:8000")
    assert not hosts.allows(Headers({"host": "app.example", "origin": "https://evil.example"}))


def test_explicit_hosts_replace_the_default() -> None:
    hosts = policy(allowed_hosts=["app.example"], public_url="https://app.example")
    assert hosts.host_allowed("APP.example:443")
    assert not hosts.host_allowed("127.0.0.1")
    assert policy(allowed_hosts=["*"]).host_allowed("anything.example")
    assert policy(allowed_hosts=["app.example:8443"]).host_allowed("app.example:8443")


class FakeSocket:
    """A client that never takes a frame: every send waits forever."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_text(self, text: str) -> None:
        await asyncio.Event().wait()


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


async def test_session_end_closes_its_sockets_only() -> None:
    registry = Registry(8, 8)
    mine, also_mine, other = conn("a"), conn("b"), conn("c", session="s2")
    for c in (mine, also_mine, other):
        registry.add(c)
    assert registry.session_ended("s1", CloseCode.SESSION_GONE) == 2
    assert mine.close_code == also_mine.close_code == CloseCode.SESSION_GONE
    assert other.close_code is None


async def test_socket_admitted_just_after_its_session_ended_is_closed() -> None:
    registry = Registry(8, 8)
    registry.session_ended("s1", CloseCode.EXPIRED)
    late = conn("late")
    registry.add(late)
    assert late.close_code == CloseCode.EXPIRED


async def test_slow_client_is_closed_not_buffered() -> None:
    c = conn("slow", queue=3)
    c.send({"n": 0})
    await asyncio.sleep(0)  # the flusher takes the first frame and is stuck sending it
    assert len(c._outbox) == 0
    for i in range(1, 4):
        c.send({"n": i})
    assert not c.closing
    c.send({"n": 4})
    assert c.close_code == CloseCode.TOO_MANY
    assert len(c._outbox) == 0  # dropped: the close goes out next
    c.send({"n": 5})  # ignored once closing
    assert len(c._outbox) == 0


async def test_first_close_wins() -> None:
    c = conn("x")
    c.close(CloseCode.SESSION_GONE)
    c.close(CloseCode.GOING_AWAY)
    assert c.close_code == CloseCode.SESSION_GONE
