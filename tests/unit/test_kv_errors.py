"""Errors that JetStream raises while a stream has no leader become ``StoreUnavailable``, which
``RetryingBucket`` rides out instead of failing the caller."""

from __future__ import annotations

from typing import Any

import pytest
from nats.errors import NoRespondersError, TimeoutError
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

from runtime_worker.kv import NatsBucket, RetryingBucket, StoreUnavailable


class ElectingKV:
    """A KV whose writes fail with ``error`` ``failures`` times, then succeed."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures

    async def create(self, key: str, value: bytes, **_: Any) -> int:
        if self.failures:
            self.failures -= 1
            raise self.error
        return 7

    async def update(self, key: str, value: bytes, last: int) -> int:
        return await self.create(key, value)


UNAVAILABLE = [
    NoStreamResponseError(),
    NoRespondersError(),
    TimeoutError(),
    ServiceUnavailableError(),
]


@pytest.mark.parametrize("error", UNAVAILABLE, ids=lambda e: type(e).__name__)
async def test_a_leaderless_stream_is_unavailable_not_a_bug(error: Exception) -> None:
    with pytest.raises(StoreUnavailable):
        await NatsBucket(ElectingKV(error, 1)).create("k", b"v")  # type: ignore[arg-type]


@pytest.mark.parametrize("error", UNAVAILABLE, ids=lambda e: type(e).__name__)
async def test_writes_are_retried_across_the_election(error: Exception) -> None:
    bucket = RetryingBucket(NatsBucket(ElectingKV(error, 3)), window_s=5.0, first_delay_s=0.001)  # type: ignore[arg-type]
    assert await bucket.create("k", b"v") == 7
    assert await bucket.update("k", b"v", 7) == 7
