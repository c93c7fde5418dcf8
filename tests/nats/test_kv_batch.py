"""The KV calls that read or write many keys at once, against the real server and in memory:
the same answers as one call per key."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bus.connection import connect
from bus.settings import Settings
from bus.state import bucket_configs
from runtime_worker import kv
from runtime_worker.kv import Bucket, MemoryBucket, NatsBucket

MakeBucket = Callable[[], Awaitable[Bucket]]


@pytest.fixture(params=["nats", "memory"])
async def make_bucket(request: pytest.FixtureRequest) -> AsyncIterator[MakeBucket]:
    """Empty buckets configured as the sessions bucket (on the test's server), or in memory."""
    if request.param == "memory":

        async def memory() -> Bucket:
            return MemoryBucket()

        yield memory
        return
    settings: Settings = request.getfixturevalue("settings")
    nc = await connect(request.getfixturevalue("harness"), "tests")
    js = nc.jetstream()
    made = 0

    async def nats() -> Bucket:
        nonlocal made
        made += 1
        config = dataclasses.replace(bucket_configs(settings)[0], bucket=f"batch{made}")
        return NatsBucket(await js.create_key_value(config))

    try:
        yield nats
    finally:
        await nc.close()


async def test_get_many_is_get_of_each_live_key(make_bucket: MakeBucket) -> None:
    bucket = await make_bucket()
    revisions = {f"k{i}": await bucket.create(f"k{i}", f"v{i}".encode()) for i in range(5)}
    await bucket.delete("k3", revisions.pop("k3"))
    revisions["k4"] = await bucket.update("k4", b"newer", revisions["k4"])

    found = await bucket.get_many(["k0", "k1", "k2", "k3", "k4", "absent", "k0"])

    assert {e.key: e.revision for e in found} == revisions
    assert len(found) == len(revisions)
    for entry in found:
        assert entry == await bucket.get(entry.key)
    assert await bucket.get_many([]) == []
    assert await bucket.get_many(["absent"]) == []


async def test_get_many_pages_past_its_limits(
    make_bucket: MakeBucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More keys than one request may name, and more bytes than one reply may carry.
    monkeypatch.setattr(kv, "MULTI_GET_MAX", 7)
    monkeypatch.setattr(kv, "MULTI_GET_MAX_BYTES", 250)
    bucket = await make_bucket()
    keys = [f"k{i}" for i in range(40)]
    await asyncio.gather(*(bucket.create(key, key.encode() * 10) for key in keys))

    found = await bucket.get_many(keys)

    assert sorted(e.key for e in found) == sorted(keys)
    assert all(e.value == e.key.encode() * 10 for e in found)


async def test_update_many_writes_each_at_its_revision(
    make_bucket: MakeBucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kv, "WRITE_WINDOW", 3)  # fewer in flight than there are writes
    bucket = await make_bucket()
    keys = [f"k{i}" for i in range(10)]
    revisions = [await bucket.create(key, b"old") for key in keys]
    stale = {2, 7}
    for i in stale:  # changed since it was read: the batch's write must lose
        await bucket.update(keys[i], b"theirs", revisions[i])

    written = await bucket.update_many(
        [(key, b"ours", rev) for key, rev in zip(keys, revisions, strict=True)]
    )

    for i, key in enumerate(keys):
        entry = await bucket.get(key)
        assert entry is not None
        if i in stale:
            assert written[i] is None
            assert entry.value == b"theirs"
        else:
            assert written[i] == entry.revision
            assert entry.value == b"ours"
    assert await bucket.update_many([]) == []
