"""Answering the NATS service protocol (``nats micro ls / info / stats``) for a service whose
endpoints are served elsewhere.

nats-py's ``nats.micro`` models give the wire format (``ServicePing``, ``ServiceInfo``,
``ServiceStats``, ``EndpointStats`` and their ``to_dict``). Its ``Service`` is not used: its
endpoints run every request of one endpoint in the subscription's single callback, one after
another, which would serialise the intents. Here the intents keep their own subscribers and
the caller hands in their figures (``endpoints``), read at each STATS or INFO request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro.service import (
    EndpointInfo,
    EndpointStats,
    ServiceInfo,
    ServicePing,
    ServiceStats,
    ServiceVerb,
    control_subject,
)

log = logging.getLogger(__name__)

EndpointFigures = Callable[[], Sequence[EndpointStats]]


class ServiceResponder:
    """One service instance answering ``$SRV.PING``, ``$SRV.INFO`` and ``$SRV.STATS``, in all
    three forms (every service, by name, by name and id). No queue group: every instance
    answers for itself."""

    def __init__(
        self,
        nc: Client,
        *,
        name: str,
        version: str,
        service_id: str,
        description: str,
        endpoints: EndpointFigures,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self._nc = nc
        self.name = name
        self.version = version
        self.service_id = service_id
        self.description = description
        self.metadata = dict(metadata or {})
        self._endpoints = endpoints
        self._subs: list[Subscription] = []
        self.started = datetime.now(UTC)

    async def start(self) -> None:
        """Subscribe every control subject."""
        handlers = {
            ServiceVerb.PING: self._on_ping,
            ServiceVerb.INFO: self._on_info,
            ServiceVerb.STATS: self._on_stats,
        }
        self.started = datetime.now(UTC)
        for verb, handler in handlers.items():
            for name, service_id in ((None, None), (self.name, None), (self.name, self.service_id)):
                subject = control_subject(verb, name=name, id=service_id)
                self._subs.append(await self._nc.subscribe(subject, cb=handler))

    async def stop(self) -> None:
        """Stop answering."""
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may already be closed
                log.debug("could not unsubscribe %s", sub.subject, exc_info=True)

    def ping(self) -> ServicePing:
        """The PING answer."""
        return ServicePing(
            id=self.service_id, name=self.name, version=self.version, metadata=self.metadata
        )

    def info(self) -> ServiceInfo:
        """The INFO answer: the endpoints, without figures."""
        return ServiceInfo(
            id=self.service_id,
            name=self.name,
            version=self.version,
            description=self.description,
            metadata=self.metadata,
            endpoints=[
                EndpointInfo(name=e.name, subject=e.subject, queue_group=e.queue_group)
                for e in self._endpoints()
            ],
        )

    def stats(self) -> ServiceStats:
        """The STATS answer: every endpoint's figures, as of now."""
        return ServiceStats(
            id=self.service_id,
            name=self.name,
            version=self.version,
            started=self.started,
            metadata=self.metadata,
            endpoints=list(self._endpoints()),
        )

    async def _on_ping(self, msg: Msg) -> None:
        await _answer(msg, self.ping().to_dict())

    async def _on_info(self, msg: Msg) -> None:
        await _answer(msg, self.info().to_dict())

    async def _on_stats(self, msg: Msg) -> None:
        await _answer(msg, self.stats().to_dict())


async def _answer(msg: Msg, body: Mapping[str, object]) -> None:
    if not msg.reply:
        return
    try:
        await msg.respond(json.dumps(body).encode())
    except Exception:  # the asker is gone, or we are disconnecting
        log.debug("could not answer %s", msg.subject, exc_info=True)
