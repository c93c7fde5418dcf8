"""Serving ``/metrics`` on loopback: this process's registry, plus its children's.

prometheus_client's own server (``start_http_server``: a WSGI server on a daemon thread) serves
one registry. A process that runs others (``symphainy up`` with worker processes) passes
``children``: a worker name to metrics URL map, read at each scrape. Each child serves its own
registry on an ephemeral loopback port (``serve(host, 0)``, its ``port`` reported to the
parent); the parent fetches those expositions, parses them with ``prometheus_client.parser``,
adds a ``worker`` label to every sample and merges them family by family with its own, so one
scrape of the parent gives one valid exposition of everything it runs. (Multiprocess mode was
the alternative: it needs ``PROMETHEUS_MULTIPROC_DIR`` set before the first import, file-backed
values on every hot-path increment, and special gauge modes; the merge keeps each process
ordinary.)
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

WORKER_LABEL = "worker"
CHILD_TIMEOUT_S = 2.0
# The OpenMetrics creation timestamps: the text format carries them as separate gauge families
# ("<name>_created"), which would collide when merged; Prometheus ignores them in this format.
_CREATED = "_created"

ChildSources = Callable[[], Mapping[str, str]]


def merge(local: Iterable[Metric], children: Mapping[str, str]) -> list[Metric]:
    """``local`` families with the samples of each child's exposition text (by worker name)
    added under the same family, each labelled ``worker="<name>"``."""
    families: dict[str, Metric] = {}
    for family in local:
        family.samples = [s for s in family.samples if not s.name.endswith(_CREATED)]
        families[family.name] = family
    for worker, text in children.items():
        for family in text_string_to_metric_families(text):
            if family.name.endswith(_CREATED):
                continue
            samples = [
                s._replace(labels={**s.labels, WORKER_LABEL: worker})
                for s in family.samples
                if not s.name.endswith(_CREATED)
            ]
            mine = families.get(family.name)
            if mine is None:
                family.samples = samples
                families[family.name] = family
            elif mine.type == family.type:
                mine.samples.extend(samples)
            else:
                log.warning("dropped %s of %s: a %s here", family.name, worker, family.type)
    return list(families.values())


def fetch(urls: Mapping[str, str]) -> dict[str, str]:
    """Each child's exposition text; a child that does not answer is left out (its series go
    stale in Prometheus, which is what an operator should see)."""
    texts: dict[str, str] = {}
    for worker, url in urls.items():
        try:
            with urllib.request.urlopen(url, timeout=CHILD_TIMEOUT_S) as response:
                texts[worker] = response.read().decode()
        except OSError as exc:
            log.debug("no metrics from worker %s at %s: %s", worker, url, exc)
    return texts


class _Merged(Collector):
    """The local registry and the children, merged at each collection."""

    def __init__(self, local: CollectorRegistry, children: ChildSources | None) -> None:
        self._local = local
        self._children = children

    def collect(self) -> Iterable[Metric]:
        children = fetch(self._children()) if self._children is not None else {}
        return merge(self._local.collect(), children)


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        """Where Prometheus scrapes it."""
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving (waits for the server thread, at most about half a second)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve(
    host: str,
    port: int,
    *,
    registry: CollectorRegistry = REGISTRY,
    children: ChildSources | None = None,
) -> MetricsServer:
    """Serve ``registry`` (and ``children``) at ``http://host:port/metrics`` (port 0: any free
    one, see ``MetricsServer.port``). Raises ``OSError`` when the port cannot be bound."""
    merged = CollectorRegistry(auto_describe=False)
    merged.register(_Merged(registry, children))
    server, thread = start_http_server(port, addr=host, registry=merged)
    return MetricsServer(host, int(server.server_port), server, thread)
