"""The smallest key-value interface the stores need, over JetStream KV or memory.

Writes are explicit: ``create`` only if absent, ``update`` only at the expected revision.
Foreign errors are translated here, where they enter, into ``KeyExists`` / ``RevisionMismatch`` /
``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError, TimeoutError
from nats.js.api import DeliverPolicy, Header
from nats.js.errors import (
    APIError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoStreamResponseError,
    ServiceUnavailableError,
)
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue

from bus import names
from runtime_worker.stats import kv_timed
from telemetry import tracing

T = TypeVar("T")

ENTRIES_IDLE_TIMEOUT_S = 2.0
# Keys one multi-key direct get asks for (the server answers at most 1,024 subjects: 413).
MULTI_GET_MAX = 1000
# Bytes of entries one direct get streams back before the client asks for the next page.
MULTI_GET_MAX_BYTES = 1 << 20
# Writes of one ``update_many`` awaiting their acknowledgement at once.
WRITE_WINDOW = 64
# How long a batch call waits for the server's next reply before the bucket counts as
# unreachable (nats-py's JetStream default for one call).
REPLY_TIMEOUT_S = 5.0
# JetStream's error codes for a compare-and-set write that lost (wrong last sequence).
_WRONG_LAST_SEQUENCE = (10071, 10164)
_EXPECTED_REVISION = Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value

# One compare-and-set write of ``update_many``: key, value, expected revision.
Write = tuple[str, bytes, int]


class KVError(Exception):
    """Base of the store-level errors (internal to the runtime; never on the wire)."""


class KeyExists(KVError):
    """``create`` found the key already present."""


class RevisionMismatch(KVError):
    """``update`` lost a compare-and-set race: the key changed since it was read."""


class StoreUnavailable(KVError):
    """The bucket could not be reached (NATS down, JetStream leader election, timeout)."""


@dataclass(frozen=True)
class Entry:
    """A value and the revision it was read at."""

    key: str
    value: bytes
    revision: int


class Bucket(Protocol):
    """What a store needs from a bucket."""

    async def get(self, key: str) -> Entry | None:
        """The entry, or None if absent or deleted."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[Entry]:
        """The live entries among ``keys`` (absent or deleted ones are left out), in no order."""
        ...

    async def create(self, key: str, value: bytes) -> int:
        """Write only if absent; the new revision. Raises ``KeyExists``."""
        ...

    async def update(self, key: str, value: bytes, revision: int) -> int:
        """Write only at ``revision``; the new revision. Raises ``RevisionMismatch``."""
        ...

    async def update_many(self, writes: Sequence[Write]) -> list[int | None]:
        """``update`` of each write: its new revision, or None where it lost the
        compare-and-set. ``StoreUnavailable`` if any outcome is unknown (some may have landed)."""
        ...

    async def delete(self, key: str, revision: int) -> None:
        """Delete only at ``revision``. Raises ``RevisionMismatch``."""
        ...

    async def keys(self, pattern: str) -> list[str]:
        """The keys matching ``pattern`` that were ever written and not purged (a deleted key is
        still listed: read it to know)."""
        ...

    async def entries(self, keys: str = ">") -> list[Entry]:
        """Every live entry whose key matches ``keys`` (NATS wildcards: ``*`` one token, ``>`` the
        rest)."""
        ...


def key_matches(key: str, pattern: str) -> bool:
    """Whether a dotted key matches a NATS subject pattern."""
    tokens, wanted = key.split("."), pattern.split(".")
    for i, want in enumerate(wanted):
        if want == ">":
            return len(tokens) > i
        if i >= len(tokens) or (want != "*" and want != tokens[i]):
            return False
    return len(tokens) == len(wanted)


# NoStreamResponseError: a write while the stream has no leader (a JetStream election).
_UNAVAILABLE = (
    TimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ConnectionClosedError,
    ServiceUnavailableError,
)


class NatsBucket:
    """A ``Bucket`` over a JetStream KV bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @kv_timed("get")
    @tracing.kv_call
    async def get(self, key: str) -> Entry | None:
        """The entry, or None if absent, deleted, or expired (a marker with no value)."""
        try:
            found = await self._kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        if not found.value or found.revision is None:
            return None
        return Entry(key=key, value=found.value, revision=found.revision)

    @kv_timed("get_many")
    @tracing.kv_call
    async def get_many(self, keys: Sequence[str]) -> list[Entry]:
        """See ``Bucket.get_many``: one direct get per ``MULTI_GET_MAX`` keys (``multi_last``,
        nats-server 2.11+), its entries streamed back to one inbox, instead of a round trip
        per key."""
        wanted = list(dict.fromkeys(keys))
        found: list[Entry] = []
        try:
            for start in range(0, len(wanted), MULTI_GET_MAX):
                found += await self._last_of(wanted[start : start + MULTI_GET_MAX])
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        return found

    async def _last_of(self, keys: list[str]) -> list[Entry]:
        nc = self._kv._js._nc
        prefix = names.kv_key_subject(self._kv._name, "")
        request: dict[str, object] = {
            "multi_last": [prefix + key for key in keys],
            "max_bytes": MULTI_GET_MAX_BYTES,
        }
        found: list[Entry] = []
        while True:
            batch = _Batch(len(prefix))
            sub = await nc.subscribe(inbox := nc.new_inbox(), cb=batch.on_reply)
            try:
                await nc.publish(self._direct_get, json.dumps(request).encode(), reply=inbox)
                end = await batch.end()
            finally:
                await sub.unsubscribe()
            found += batch.entries
            # Past ``max_bytes`` the server stops: ask again from where it stopped, at the same
            # point in the stream's history.
            if end is None or int(end.get("Nats-Num-Pending") or 0) == 0:
                return found
            request["seq"] = int(end["Nats-Last-Sequence"]) + 1
            request["up_to_seq"] = int(end["Nats-UpTo-Sequence"])

    @property
    def _direct_get(self) -> str:
        return f"{names.JS_API}.DIRECT.GET.{names.kv_stream(self._kv._name)}"

    @kv_timed("create")
    @tracing.kv_call
    async def create(self, key: str, value: bytes) -> int:
        """Write only if absent."""
        try:
            return int(await self._kv.create(key, value))
        except KeyWrongLastSequenceError as exc:
            raise KeyExists(key) from exc
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc

    @kv_timed("update")
    @tracing.kv_call
    async def update(self, key: str, value: bytes, revision: int) -> int:
        """Compare-and-set on the revision."""
        try:
            return int(await self._kv.update(key, value, last=revision))
        except KeyWrongLastSequenceError as exc:
            raise RevisionMismatch(key) from exc
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc

    @kv_timed("update_many")
    @tracing.kv_call
    async def update_many(self, writes: Sequence[Write]) -> list[int | None]:
        """See ``Bucket.update_many``: the writes pipelined, ``WRITE_WINDOW`` unacknowledged at
        a time, their acknowledgements on one inbox (nats-py's ``update`` costs a request
        future, a timer and a reply object per write, about 4x the CPU)."""
        if not writes:
            return []
        nc = self._kv._js._nc
        prefix = names.kv_key_subject(self._kv._name, "")
        acks = _Acks(len(writes))
        try:
            sub = await nc.subscribe(f"{(inbox := nc.new_inbox())}.*", cb=acks.on_reply)
            try:
                for index, (key, value, revision) in enumerate(writes):
                    await acks.room(WRITE_WINDOW)
                    expect = {_EXPECTED_REVISION: str(revision)}
                    await nc.publish(prefix + key, value, f"{inbox}.{index}", expect)
                    acks.sent += 1
                await acks.room(1)
            finally:
                await sub.unsubscribe()
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        return acks.revisions

    @kv_timed("delete")
    @tracing.kv_call
    async def delete(self, key: str, revision: int) -> None:
        """Delete at ``revision``."""
        try:
            await self._kv.delete(key, last=revision)
        except APIError as exc:
            if exc.err_code == 10071:  # wrong last sequence
                raise RevisionMismatch(key) from exc
            raise StoreUnavailable(str(exc)) from exc
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc

    @kv_timed("keys")
    @tracing.kv_call
    async def keys(self, pattern: str) -> list[str]:
        """See ``Bucket.keys``: the server's count of messages per subject, one request and no
        consumer (an ordered consumer per call outlived the call, and under a few hundred calls
        a second the stream refused more: "maximum consumers limit reached")."""
        subject = names.kv_key_subject(self._kv._name, pattern)
        prefix = names.kv_key_subject(self._kv._name, "")
        try:
            info = await self._kv._js.stream_info(
                names.kv_stream(self._kv._name), subjects_filter=subject
            )
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        return [found[len(prefix) :] for found in info.state.subjects or {}]

    @kv_timed("entries")
    @tracing.kv_call
    async def entries(self, keys: str = ">") -> list[Entry]:
        """Every live entry matching ``keys``, read through one ordered consumer (no per-key round
        trips).

        The last message of each key is delivered; ``num_pending`` of 0 marks the end. (nats-py's
        own watcher can signal the end before an entry already in flight, so it is not used.)
        """
        js = self._kv._js
        bucket = self._kv._name
        subject = names.kv_key_subject(bucket, keys)
        try:
            if keys == ">":
                info = await js.stream_info(names.kv_stream(bucket))
                if not info.state.messages:
                    return []
            else:
                # Counted per subject by the server: nothing matching means no consumer to wait on.
                info = await js.stream_info(names.kv_stream(bucket), subjects_filter=subject)
                if not info.state.subjects:
                    return []
            sub = await js.subscribe(
                subject,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            )
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        prefix = names.kv_key_subject(bucket, "")
        found: list[Entry] = []
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=ENTRIES_IDLE_TIMEOUT_S)
                except TimeoutError:
                    break  # what was there expired between stream_info and subscribe
                op = (msg.headers or {}).get(KV_OP)
                if op not in (KV_DEL, KV_PURGE) and msg.data:
                    found.append(
                        Entry(
                            key=msg.subject[len(prefix) :],
                            value=msg.data,
                            revision=msg.metadata.sequence.stream,
                        )
                    )
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        return found


class _Batch:
    """The replies to one multi-key direct get: entries until the end-of-batch status."""

    def __init__(self, prefix_len: int) -> None:
        self._prefix_len = prefix_len
        self.entries: list[Entry] = []
        self._end: asyncio.Future[dict[str, str] | None] = (
            asyncio.get_running_loop().create_future()
        )

    async def end(self) -> dict[str, str] | None:
        """The end-of-batch headers once every entry is in; None if nothing matched."""
        done, _ = await asyncio.wait({self._end}, timeout=REPLY_TIMEOUT_S)
        if not done:
            raise StoreUnavailable("a direct get did not finish")
        return self._end.result()

    async def on_reply(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get(Header.STATUS)
        if self._end.done():
            return
        if status is None or msg.data:
            op = headers.get(KV_OP)
            revision = headers.get("Nats-Sequence")
            if msg.data and op not in (KV_DEL, KV_PURGE) and revision is not None:
                key = headers["Nats-Subject"][self._prefix_len :]
                self.entries.append(Entry(key=key, value=msg.data, revision=int(revision)))
        elif status == "204":
            self._end.set_result(dict(headers))
        elif status == "404":
            self._end.set_result(None)
        elif status.startswith("5"):
            self._end.set_exception(StoreUnavailable(f"direct get: {status}"))
        else:
            description = headers.get(Header.DESCRIPTION, "")
            self._end.set_exception(KVError(f"direct get refused: {status} {description}"))


class _Acks:
    """The acknowledgements of one ``update_many``, by the write's index in its reply subject."""

    def __init__(self, n: int) -> None:
        self.revisions: list[int | None] = [None] * n
        self.sent = 0
        self._answered = bytearray(n)
        self._count = 0
        self._failure: BaseException | None = None
        self._wake: asyncio.Future[None] | None = None

    async def room(self, window: int) -> None:
        """Wait until fewer than ``window`` writes are unanswered (1: all are answered)."""
        while self._failure is None and self.sent - self._count >= window:
            self._wake = asyncio.get_running_loop().create_future()
            done, _ = await asyncio.wait({self._wake}, timeout=REPLY_TIMEOUT_S)
            if not done:
                raise StoreUnavailable("a write was not acknowledged")
        if self._failure is not None:
            raise self._failure

    async def on_reply(self, msg: Msg) -> None:
        index = int(msg.subject.rsplit(".", 1)[1])
        if self._answered[index]:
            return
        self._answered[index] = 1
        self._count += 1
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        if (msg.headers or {}).get(Header.STATUS) == "503":  # no responders: no stream leader
            self._failure = StoreUnavailable("no responders")
            return
        ack = json.loads(msg.data)
        error = ack.get("error")
        if error is None:
            self.revisions[index] = int(ack["seq"])
        elif error.get("err_code") in _WRONG_LAST_SEQUENCE:
            self.revisions[index] = None
        elif error.get("code") == 503:
            self._failure = StoreUnavailable(str(error.get("description", "unavailable")))
        else:
            self._failure = APIError(
                code=error.get("code"),
                description=error.get("description"),
                err_code=error.get("err_code"),
            )


class MemoryBucket:
    """A ``Bucket`` in memory with the same write semantics, for unit tests and examples."""

    def __init__(self) -> None:
        self._data: dict[str, Entry] = {}
        self._revision = 0
        self._lock = asyncio.Lock()

    async def get(self, key: str) -> Entry | None:
        """The entry, or None."""
        return self._data.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[Entry]:
        """The entries among ``keys``."""
        return [self._data[key] for key in dict.fromkeys(keys) if key in self._data]

    async def create(self, key: str, value: bytes) -> int:
        """Write only if absent."""
        async with self._lock:
            if key in self._data:
                raise KeyExists(key)
            return self._put(key, value)

    async def update(self, key: str, value: bytes, revision: int) -> int:
        """Compare-and-set on the revision."""
        async with self._lock:
            current = self._data.get(key)
            if current is None or current.revision != revision:
                raise RevisionMismatch(key)
            return self._put(key, value)

    async def update_many(self, writes: Sequence[Write]) -> list[int | None]:
        """``update`` of each write; None where it lost."""
        revisions: list[int | None] = []
        for key, value, revision in writes:
            try:
                revisions.append(await self.update(key, value, revision))
            except RevisionMismatch:
                revisions.append(None)
        return revisions

    async def delete(self, key: str, revision: int) -> None:
        """Delete at ``revision``."""
        async with self._lock:
            current = self._data.get(key)
            if current is None or current.revision != revision:
                raise RevisionMismatch(key)
            del self._data[key]

    async def keys(self, pattern: str) -> list[str]:
        """See ``Bucket.keys``."""
        return [k for k in self._data if key_matches(k, pattern)]

    async def entries(self, keys: str = ">") -> list[Entry]:
        """Every entry matching ``keys``."""
        return [e for k, e in self._data.items() if key_matches(k, keys)]

    def _put(self, key: str, value: bytes) -> int:
        self._revision += 1
        self._data[key] = Entry(key=key, value=value, revision=self._revision)
        return self._revision


class RetryingBucket:
    """A ``Bucket`` that rides out short outages (a JetStream leader election takes 5-8 s).

    Each call is retried with capped exponential backoff while ``StoreUnavailable`` persists,
    for at most ``window_s``; then the error is raised to the caller. A lost reply to a write is
    safe to retry: ``create`` then reports ``KeyExists`` and ``update`` ``RevisionMismatch``,
    which the stores resolve by reading again.
    """

    def __init__(self, inner: Bucket, window_s: float, first_delay_s: float = 0.05) -> None:
        self._inner = inner
        self._window_s = window_s
        self._first_delay_s = first_delay_s

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._window_s
        delay = self._first_delay_s
        while True:
            try:
                return await make()
            except StoreUnavailable:
                if loop.time() + delay > give_up:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def get(self, key: str) -> Entry | None:
        """See ``Bucket.get``."""
        return await self._call(lambda: self._inner.get(key))

    async def get_many(self, keys: Sequence[str]) -> list[Entry]:
        """See ``Bucket.get_many``."""
        return await self._call(lambda: self._inner.get_many(keys))

    async def create(self, key: str, value: bytes) -> int:
        """See ``Bucket.create``."""
        return await self._call(lambda: self._inner.create(key, value))

    async def update(self, key: str, value: bytes, revision: int) -> int:
        """See ``Bucket.update``."""
        return await self._call(lambda: self._inner.update(key, value, revision))

    async def update_many(self, writes: Sequence[Write]) -> list[int | None]:
        """See ``Bucket.update_many``: a retry sends every write again; those that had landed
        then lose their compare-and-set (None), and the caller reads them again."""
        return await self._call(lambda: self._inner.update_many(writes))

    async def delete(self, key: str, revision: int) -> None:
        """See ``Bucket.delete``."""
        await self._call(lambda: self._inner.delete(key, revision))

    async def keys(self, pattern: str) -> list[str]:
        """See ``Bucket.keys``."""
        return await self._call(lambda: self._inner.keys(pattern))

    async def entries(self, keys: str = ">") -> list[Entry]:
        """See ``Bucket.entries``."""
        return await self._call(lambda: self._inner.entries(keys))
