"""The merged exposition: a parent's families with each child's samples labelled by worker, one
valid document (no family twice), and the endpoint served on loopback."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from telemetry.exposition import merge, serve


def child_text(executed: int) -> str:
    registry = CollectorRegistry()
    counter = Counter("t_executed", "Executed.", ["intent", "code"], registry=registry)
    counter.labels("VerifySession", "ok").inc(executed)
    seconds = Histogram("t_seconds", "Seconds.", ["intent"], buckets=(0.1, 1), registry=registry)
    seconds.labels("VerifySession").observe(0.05)
    return generate_latest(registry).decode()


def parent() -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter("t_executed", "Executed.", ["intent", "code"], registry=registry)
    counter.labels("Ping", "ok").inc()
    Gauge("t_sockets", "Sockets.", registry=registry).set(3)
    return registry


class Fixed(Collector):
    """Collects the given families."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def render(families: list[Metric]) -> str:
    return generate_latest(Fixed(families)).decode()


@pytest.mark.unit
def test_children_samples_join_the_parents_families_with_a_worker_label() -> None:
    merged = merge(parent().collect(), {"w1": child_text(2), "w2": child_text(5)})
    text = render(merged)

    helps = [line for line in text.splitlines() if line.startswith("# HELP")]
    assert len(helps) == len(set(helps)), "a family appears twice"
    assert "_created" not in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    executed = {
        (s.labels.get("worker"), s.labels["intent"]): s.value
        for s in families["t_executed"].samples
    }
    assert executed == {
        (None, "Ping"): 1.0,
        ("w1", "VerifySession"): 2.0,
        ("w2", "VerifySession"): 5.0,
    }
    counts = {
        s.labels["worker"]: s.value
        for s in families["t_seconds"].samples
        if s.name == "t_seconds_count"
    }
    assert counts == {"w1": 1.0, "w2": 1.0}
    assert families["t_seconds"].type == "histogram"
    assert [s.value for s in families["t_sockets"].samples] == [3.0]


@pytest.mark.unit
def test_a_family_of_another_type_in_a_child_is_dropped_not_mixed() -> None:
    clash = "# HELP t_sockets Sockets.\n# TYPE t_sockets counter\nt_sockets_total 9.0\n"
    merged = merge(parent().collect(), {"w1": clash})
    sockets = next(f for f in merged if f.name == "t_sockets")
    assert sockets.type == "gauge"
    assert [s.value for s in sockets.samples] == [3.0]


@pytest.mark.http
def test_the_endpoint_serves_the_merged_exposition_on_loopback() -> None:
    child = serve("127.0.0.1", 0, registry=parent())
    try:
        top = serve("127.0.0.1", 0, registry=parent(), children=lambda: {"w9": child.url})
        try:
            assert top.url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(top.url, timeout=5) as response:
                text = response.read().decode()
        finally:
            top.stop()
    finally:
        child.stop()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert {s.labels.get("worker") for s in samples if s.name == "t_executed_total"} == {None, "w9"}


@pytest.mark.http
def test_a_child_that_does_not_answer_leaves_only_its_own_series_out() -> None:
    top = serve("127.0.0.1", 0, registry=parent(), children=lambda: {"gone": "http://127.0.0.1:1/"})
    try:
        with urllib.request.urlopen(top.url, timeout=5) as response:
            text = response.read().decode()
    finally:
        top.stop()
    assert 't_executed_total{code="ok",intent="Ping"} 1.0' in text
    assert "gone" not in text
