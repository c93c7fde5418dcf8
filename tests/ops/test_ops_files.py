"""The operations files: alerting rules and their unit tests run by the real ``promtool``, the
example Prometheus configuration, the Grafana dashboard, all on the metrics of telemetry/metrics.py.

``promtool`` comes with Debian's ``prometheus`` package (.ci/run installs it); without it these
tests skip on a laptop and fail under CI=true, like every tier that cannot run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from telemetry import metrics

pytestmark = pytest.mark.ops

OPS = Path(__file__).parents[2] / "ops"
RULES = OPS / "prometheus" / "symphainy.rules.yml"
RULE_TESTS = OPS / "prometheus" / "symphainy.rules.test.yml"
CONFIG = OPS / "prometheus" / "prometheus.yml"
DASHBOARD = OPS / "grafana" / "symphainy.json"
ALERTS = {
    "SymphainyRuntimeUnavailable",
    "SymphainyRuntimeDown",
    "SymphainyIntentErrorRatio",
    "SymphainyVerifySessionSlow",
    "SymphainyAuditStreamNearCap",
    "SymphainySocketsNearLimit",
}
METRIC_NAME = re.compile(r"\bsymphainy_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not found (Debian package prometheus)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}, and CI must run it")
        pytest.skip(f"{message}; CI=true makes this a failure")
    return found


def run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )


def declared() -> set[str]:
    """Every series name telemetry/metrics.py exports (counters with ``_total``)."""
    found = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for metric in value.describe():
                found.add(f"{metric.name}_total" if metric.type == "counter" else metric.name)
    return found


def used(text: str) -> set[str]:
    """The metric names ``text`` uses, histogram series folded into their histogram."""
    names = set()
    for name in METRIC_NAME.findall(text):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in declared():
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def test_the_rules_are_valid(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_the_rules_unit_tests_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_each_alert_is_tested_firing_and_quiet() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    assert alerts == ALERTS
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == ALERTS
    assert quiet == ALERTS


def test_a_wrong_expectation_makes_promtool_fail(promtool: str, tmp_path: Path) -> None:
    # The rule tests can fail: the same file expecting the error ratio alert never to fire.
    tests: dict[str, Any] = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = [str(RULES)]
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            if check["alertname"] == "SymphainyIntentErrorRatio":
                check["exp_alerts"] = []
    broken = tmp_path / "broken.test.yml"
    broken.write_text(yaml.safe_dump(tests))
    result = run(promtool, "test", "rules", str(broken))
    assert result.returncode != 0
    assert "SymphainyIntentErrorRatio" in result.stdout + result.stderr


def test_the_example_prometheus_config_is_valid(promtool: str) -> None:
    result = run(promtool, "check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"] for job in yaml.safe_load(CONFIG.read_text())["scrape_configs"]}
    assert jobs == {"symphainy-up", "symphainy-experience", "symphainy-runtime"}


def test_rules_and_dashboard_use_only_declared_metrics() -> None:
    assert "symphainy_experience_intents_sent_total" in declared()
    assert "symphainy_runtime_intent_duration_seconds" in declared()
    for path in (RULES, RULE_TESTS, DASHBOARD):
        names = used(path.read_text())
        assert names, path
        unknown = names - declared()
        assert not unknown, f"{path.name} uses metrics not in telemetry/metrics.py: {unknown}"


def test_the_dashboard_has_a_query_in_every_panel_and_the_main_figures() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]
    shown = used(DASHBOARD.read_text())
    assert {
        "symphainy_experience_intents_sent_total",
        "symphainy_experience_intent_duration_seconds",
        "symphainy_experience_http_requests_total",
        "symphainy_experience_sockets_open",
        "symphainy_experience_socket_admissions_total",
        "symphainy_experience_socket_closes_total",
        "symphainy_experience_login_failures_total",
        "symphainy_runtime_audit_stream_bytes",
    } <= shown


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    # promtool parses expressions only in rules: each query becomes a recording rule.
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
