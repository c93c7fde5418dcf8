"""What the handlers are given: the stores, the policy, the hasher, the clock."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.kv import KeyValue

from bus.settings import Settings
from bus.state import StateSurface
from runtime_worker.attempts import LoginAttempts
from runtime_worker.dispatch import Clock
from runtime_worker.kv import Bucket, NatsBucket, RetryingBucket
from runtime_worker.passwords import Passwords
from runtime_worker.sessions import SessionPolicy
from runtime_worker.store import IdempotencyStore, SessionStore, UserStore


@dataclass(frozen=True)
class Deps:
    """Everything a handler may ask for, built once per worker."""

    sessions: SessionStore
    users: UserStore
    attempts: LoginAttempts
    idempotency: IdempotencyStore
    identities: Bucket
    handovers: Bucket
    passwords: Passwords
    policy: SessionPolicy
    clock: Clock
    worker_id: str

    @classmethod
    def over(
        cls,
        surface: StateSurface,
        settings: Settings,
        clock: Clock,
        worker_id: str,
        passwords: Passwords | None = None,
    ) -> Deps:
        """Deps over the real buckets, each riding out outages for ``write_retry_window_s``."""

        def bucket(kv: KeyValue) -> RetryingBucket:
            return RetryingBucket(NatsBucket(kv), settings.write_retry_window_s)

        return cls(
            sessions=SessionStore(bucket(surface.sessions), bucket(surface.sessions_by_user)),
            users=UserStore(bucket(surface.users)),
            attempts=LoginAttempts.from_settings(bucket(surface.login_attempts), settings),
            idempotency=IdempotencyStore(bucket(surface.idempotency)),
            identities=bucket(surface.identities),
            handovers=bucket(surface.handovers),
            passwords=passwords or Passwords(),
            policy=SessionPolicy.from_settings(settings),
            clock=clock,
            worker_id=worker_id,
        )
