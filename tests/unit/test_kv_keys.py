"""Key patterns of ``Bucket.entries``: NATS wildcard rules, the same in memory as on a server."""

from __future__ import annotations

import pytest

from runtime_worker.kv import MemoryBucket, key_matches


@pytest.mark.parametrize(
    ("key", "pattern", "expected"),
    [
        ("u1.s1", "u1.*", True),
        ("u1.s1", "u1.>", True),
        ("u1.s1", ">", True),
        ("u1", ">", True),
        ("u10.s1", "u1.*", False),
        ("u1.s1.x", "u1.*", False),
        ("u1.s1.x", "u1.>", True),
        ("u1", "u1.>", False),
        ("u1", "u1.*", False),
        ("u1.s1", "u1.s1", True),
        ("u1.s1", "*.s1", True),
        ("u1.s2", "*.s1", False),
    ],
)
def test_key_patterns_follow_nats_wildcards(key: str, pattern: str, expected: bool) -> None:
    assert key_matches(key, pattern) is expected


async def test_memory_entries_filter_by_pattern() -> None:
    bucket = MemoryBucket()
    for key in ("a.1", "a.2", "ab.1", "b.1"):
        await bucket.create(key, key.encode())
    assert sorted(e.key for e in await bucket.entries("a.*")) == ["a.1", "a.2"]
    assert len(await bucket.entries()) == 4
    assert await bucket.entries("c.*") == []


async def test_memory_keys_filter_by_pattern() -> None:
    bucket = MemoryBucket()
    for key in ("a.1", "a.2", "ab.1", "b.1"):
        await bucket.create(key, key.encode())
    assert sorted(await bucket.keys("a.*")) == ["a.1", "a.2"]
    assert await bucket.keys("c.*") == []
