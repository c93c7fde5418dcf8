"""Runs the web client's JavaScript unit tests (``node --test tests/js/``) as part of pytest.

Without node they skip locally; with ``CI=true`` they fail, since CI must run every tier.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
MIN_NODE_MAJOR = 18  # node:test with describe/test and --test-reporter (Debian 12 ships 18)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node is not installed, and CI must run the JavaScript tests")
        pytest.skip("node is not installed (apt-get install nodejs); CI=true makes this a failure")
    return node


def test_client_module_passes_its_node_tests() -> None:
    node = _node()
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    assert int(version.lstrip("v").split(".")[0]) >= MIN_NODE_MAJOR, f"node {version} is too old"
    run = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(HERE.relative_to(ROOT)) + "/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"node --test failed:\n{run.stdout}\n{run.stderr}"
    counts = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", run.stdout, re.MULTILINE))
    assert counts.get("fail") == "0", run.stdout
    assert int(counts.get("pass", "0")) > 0, f"node ran no tests:\n{run.stdout}"
