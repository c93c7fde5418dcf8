"""The hot intents' subscribers: nats-py directly on the broker's connection, a task per message.

FastStream serves every other intent. For the few on every request's path (``VerifySession``
above all: every Bearer call and every socket admission) its consume pipeline (middlewares,
FastDepends, an anyio task group per subscriber) cost more than the intent's own work: profiled
at 64 in flight, about two thirds of the worker's time. Here a message costs one task. The
intent still goes through ``Dispatcher.handle``, the one place an exception becomes an error
reply, so both paths answer alike.

Each subscriber runs at most ``concurrency`` intents at once; past that its callback waits, and
messages wait in nats-py's pending queue, as they do behind a busy FastStream subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bus import names
from intents import Intent
from runtime_worker.dispatch import Dispatcher, Handler, I

log = logging.getLogger(__name__)


class FastLane:
    """Subscribers for the hot intents, started after the broker has connected."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._bindings: list[tuple[type[Any], Handler[Any]]] = []
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self, intent_type: type[I], handler: Handler[I]) -> None:
        """Serve ``intent_type`` here once started (in the runtime queue group)."""
        self._bindings.append((intent_type, handler))

    @property
    def intent_types(self) -> tuple[type[Intent], ...]:
        """The intents served here."""
        return tuple(intent_type for intent_type, _ in self._bindings)

    async def start(self, nc: Client) -> None:
        """Subscribe every bound intent on ``nc``."""
        for intent_type, handler in self._bindings:
            on_msg = self._callback(nc, intent_type, handler)
            self._subs.append(
                await nc.subscribe(intent_type.subject, queue=names.RUNTIME_QUEUE, cb=on_msg)
            )

    async def stop(self, timeout: float) -> None:
        """Take no more intents; give those in flight ``timeout`` seconds to answer."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def _callback(
        self, nc: Client, intent_type: type[I], handler: Handler[I]
    ) -> Callable[[Msg], Awaitable[None]]:
        slots = asyncio.Semaphore(self._dispatcher.concurrency)
        dispatcher, tasks = self._dispatcher, self._tasks

        async def serve(msg: Msg) -> None:
            try:
                reply = await dispatcher.handle(msg.data, msg.headers, intent_type, handler)
                if msg.reply:
                    await nc.publish(msg.reply, reply)
            except Exception:  # the connection went away under us; the caller will retry
                log.debug("could not answer %s", intent_type.__name__, exc_info=True)
            finally:
                slots.release()

        async def on_msg(msg: Msg) -> None:
            await slots.acquire()
            task = asyncio.create_task(serve(msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        return on_msg
