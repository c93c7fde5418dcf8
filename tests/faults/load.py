"""A steady login/verify load from virtual users, and what the fault tests measure with it.

Each virtual user logs in, then keeps checking its session (``GET /api/session/{id}``), logging
in again every ``login_every`` requests; closed loop, no think time. Every request is recorded
with its start and end (``loop.time()``) and classified:

- ok: the right answer (200 with the caller's own session, or a login for the right user);
- failed: a clear, retryable refusal (503 with ``Retry-After``);
- wrong: anything else, e.g. a live session reported missing (401/404), a 500, no answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx

from tests.processes import PASSWORD

Kind = Literal["login", "verify"]

BACKOFF_S = 0.1


@dataclass(frozen=True)
class Outcome:
    """One request of the load."""

    kind: Kind
    user: str
    started: float
    ended: float
    status: int | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """The right answer."""
        return self.status in (200,) and self.problem is None

    @property
    def failed(self) -> bool:
        """Refused clearly and retryably (503 + Retry-After), not answered wrongly."""
        return not self.ok and self.problem is None


@dataclass(frozen=True)
class Session:
    """A session the load obtained: it must verify for as long as it lives."""

    session_id: str
    token: str
    user: str
    user_id: str


@dataclass
class Load:
    """Virtual users against one Experience Plane; use as ``async with``."""

    base_url: str
    users: list[str]
    login_every: int = 8
    outcomes: list[Outcome] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    in_flight: dict[int, float] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def __aenter__(self) -> Load:
        self._tasks = [asyncio.create_task(self._user(name)) for name in self.users]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stopping = True
        await asyncio.gather(*self._tasks)

    def now(self) -> float:
        """The clock outcomes are stamped with."""
        return asyncio.get_running_loop().time()

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait (event-driven) until ``condition()`` holds after some request finished."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"load: not {what} within {timeout} s") from None

    def ok_since(self, moment: float, kind: Kind | None = None) -> int:
        """Right answers to requests started at or after ``moment``."""
        return sum(
            1
            for o in self.outcomes
            if o.ok and o.started >= moment and (kind is None or o.kind == kind)
        )

    def settled_before(self, moment: float) -> bool:
        """Whether every request started before ``moment`` has its answer."""
        return all(started >= moment for started in self.in_flight.values())

    def in_flight_at(self, moment: float) -> int:
        """How many requests were started before ``moment`` and ended after it."""
        return sum(1 for o in self.outcomes if o.started < moment < o.ended)

    async def _user(self, name: str) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=60.0) as http:
            mine: Session | None = None
            for count in itertools.count():
                if self._stopping:
                    return
                if mine is None or count % self.login_every == 0:
                    session, outcome = await self._login(http, name)
                    mine = session or mine
                else:
                    outcome = await self._verify(http, mine)
                if outcome.failed:
                    # A client backs off after a 503 rather than spinning on it.
                    await asyncio.sleep(BACKOFF_S)

    async def _login(self, http: httpx.AsyncClient, name: str) -> tuple[Session | None, Outcome]:
        async def call() -> httpx.Response:
            return await http.post("/api/auth/login", json={"username": name, "password": PASSWORD})

        response, outcome = await self._request("login", name, call)
        if response is None or outcome.problem or response.status_code != 200:
            return None, self._record(outcome)
        body = response.json()
        session = Session(body["session_id"], body["session_token"], name, body["user"]["id"])
        problem = None
        if body["user"]["username"] != name or len(session.session_id) != 32:
            problem = f"login of {name} answered {body}"
        else:
            self.sessions.append(session)
        return session, self._record(
            Outcome("login", name, outcome.started, outcome.ended, 200, problem)
        )

    async def _verify(self, http: httpx.AsyncClient, session: Session) -> Outcome:
        async def call() -> httpx.Response:
            return await http.get(
                f"/api/session/{session.session_id}",
                headers={"Authorization": f"Bearer {session.token}"},
            )

        response, outcome = await self._request("verify", session.user, call)
        if response is not None and response.status_code == 200 and outcome.problem is None:
            body = response.json()
            if (body["session_id"], body["user_id"], body["state"]) != (
                session.session_id,
                session.user_id,
                "active",
            ):
                outcome = Outcome(
                    "verify",
                    session.user,
                    outcome.started,
                    outcome.ended,
                    200,
                    f"session {session.session_id} answered {body}",
                )
        return self._record(outcome)

    async def _request(
        self, kind: Kind, user: str, call: Callable[[], Awaitable[httpx.Response]]
    ) -> tuple[httpx.Response | None, Outcome]:
        request_id = next(self._ids)
        started = self.now()
        self.in_flight[request_id] = started
        try:
            response = await call()
        except httpx.HTTPError as exc:
            return None, Outcome(kind, user, started, self.now(), None, f"no answer: {exc!r}")
        finally:
            self.in_flight.pop(request_id, None)
        ended = self.now()
        status = response.status_code
        problem = None
        if status == 503:
            if "Retry-After" not in response.headers:
                problem = "503 without Retry-After"
        elif status != 200:
            problem = f"{status} {response.text[:200]}"
        return response, Outcome(kind, user, started, ended, status, problem)

    def _record(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        self._changed.set()
        return outcome


async def lost_sessions(base_url: str, sessions: list[Session]) -> list[str]:
    """Sessions that no longer verify (each must answer 200, active, for its own user)."""
    lost = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as http:
        for session in sessions:
            with contextlib.suppress(httpx.HTTPError):
                response = await http.get(
                    f"/api/session/{session.session_id}",
                    headers={"Authorization": f"Bearer {session.token}"},
                )
                if response.status_code == 200 and response.json()["state"] == "active":
                    continue
            lost.append(session.session_id)
    return lost
