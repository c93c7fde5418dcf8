"""Make ``docs/prometheus.png``: Prometheus's graph of intent latency on a real, busy system.

Run ``.venv/bin/python ops/screenshot.py``. It starts ``symphainy up --metrics-port`` and
Debian's ``prometheus`` scraping it every second (both on loopback, in a temporary directory),
drives 105 s of ordinary traffic (logins, a bad login now and then, session lists and reads,
sessions created and revoked, agent echoes over a WebSocket), then opens Prometheus's graph
page in Debian's chromium with the p99 and p50 round trip of each intent type over the last
90 s, as the Experience Plane sees it, and saves the page. The agent echoes draw no line: the
Experience Plane counts a ``RunAgent`` but times no round trip for it (its results stream
back). Everything it started is stopped and removed on the way out, also after an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
from playwright.async_api import async_playwright
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "prometheus.png"
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 800}
START_TIMEOUT_S = 60.0
UP_LINE = re.compile(r"symphainy is up \(NATS \S+\): (http://\S+)")
METRICS_LINE = re.compile(r"metrics: (http://\S+)")
PROMETHEUS_LISTENING = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')
PROMETHEUS_READY = "Server is ready to receive web requests."
AGENT_PATH = "/api/runtime/agent"
# Traffic left out of the picture: the first seconds, while the 30 s rate window is still
# filling and a first request's cost (connections, caches) is a large share of a few samples.
WARM_UP_S = 15
# Round trip per intent type as the Experience Plane sees it, over the last 30 s. Left out: the
# login's AuthenticateUser (argon2 on purpose, ~0.3 s, would flatten every other line to the
# axis) and what only ``up`` itself sends at start (no rate, so no line, only a legend entry).
LATENCY = (
    "histogram_quantile({q}, sum by (le, intent) (rate("
    "symphainy_experience_intent_duration_seconds_bucket"
    '{{intent!~"AuthenticateUser|CreateUser|ListUsers|Ping"}}[30s])))'
)
# The graphs only: no editing controls, each legend beside its chart, charts less tall. Added
# before the page's own script draws, which sizes each chart from its box.
PAGE_STYLE = """
.query-history, #add_graph, .query_form .form-inline, a[name=remove], .nav-tabs,
.graph_container > .clearfix { display: none !important; }
.tab-content > .graph_container.active { display: flex; align-items: flex-start; }
.graph_area { flex: 1 1 auto; min-width: 0; }
.legend { flex: 0 0 250px; margin: 8px; }
.graph { min-height: 250px; }
.graph_wrapper { margin-top: 4px; }
.expression_input { font-size: 14px; }
.expression_input:focus { box-shadow: none; border-color: #ced4da; }
"""
ADD_STYLE = (
    "document.addEventListener('DOMContentLoaded', () => {"
    " const style = document.createElement('style');"
    f" style.textContent = {json.dumps(PAGE_STYLE)};"
    " document.head.appendChild(style); });"
)


@dataclass
class Up:
    """A running ``symphainy up``: where it serves and where its metrics are."""

    process: subprocess.Popen[bytes]
    url: str
    metrics_url: str


def free_port() -> int:
    """A port nothing listens on now (for the flags that take no 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as an operator stops it; its whole process group killed if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def running_up(tmp: Path) -> Iterator[Up]:
    """``symphainy up`` on free ports with its data in ``tmp``; stopped on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYMPHAINY_")}
    # fmt: off
    args = [
        str(REPO / ".venv" / "bin" / "symphainy"), "up", "--port", "0",
        "--nats-port", str(free_port()), "--data-dir", str(tmp / "data"),
        "--metrics-port", str(free_port()),
    ]
    # fmt: on
    out_path = tmp / "up.out"
    with out_path.open("wb") as out, (tmp / "up.log").open("wb") as log:
        process = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=log,
            start_new_session=True,
        )
    try:
        give_up = time.monotonic() + START_TIMEOUT_S
        while not (found := UP_LINE.search(text := out_path.read_text(errors="replace"))):
            if process.poll() is not None or time.monotonic() > give_up:
                raise RuntimeError(f"symphainy up did not start:\n{text}")
            time.sleep(0.05)
        metrics = METRICS_LINE.search(text)
        if metrics is None:
            raise RuntimeError(f"symphainy up printed no metrics line:\n{text}")
        yield Up(process, found.group(1), metrics.group(1))
    finally:
        stop(process)


@contextlib.contextmanager
def running_prometheus(tmp: Path, metrics_url: str) -> Iterator[str]:
    """Debian's ``prometheus`` scraping ``metrics_url`` every second; its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed (apt-get install -y prometheus)")
    target = metrics_url.removeprefix("http://").split("/", 1)[0]
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: symphainy-up\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    log_path = tmp / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'prometheus'}",
                "--web.listen-address=127.0.0.1:0",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        give_up = time.monotonic() + START_TIMEOUT_S
        while True:
            text = log_path.read_text(errors="replace")
            found = PROMETHEUS_LISTENING.search(text)
            if found and PROMETHEUS_READY in text:
                break
            if process.poll() is not None or time.monotonic() > give_up:
                raise RuntimeError(f"prometheus did not start:\n{text}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        stop(process)


async def traffic(url: str, password: str, seconds: float) -> dict[str, int]:
    """Drive ordinary use for ``seconds``; the number of requests of each kind."""
    counts: dict[str, int] = {}

    def count(kind: str) -> None:
        counts[kind] = counts.get(kind, 0) + 1

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def login() -> dict[str, str]:
            response = await http.post(
                "/api/auth/login", json={"username": "admin", "password": password}
            )
            response.raise_for_status()
            count("login")
            return dict(response.json())

        logins = [await login() for _ in range(3)]
        deadline = asyncio.get_running_loop().time() + seconds

        async def readers() -> None:
            # Bearer reads at a modest pace: the list, then one session, round the sessions.
            for n in itertools.count():
                if asyncio.get_running_loop().time() > deadline:
                    return
                session = logins[n % len(logins)]
                headers = {"Authorization": f"Bearer {session['session_token']}"}
                listed = await http.get("/api/sessions", headers=headers)
                listed.raise_for_status()
                one = await http.get(f"/api/session/{session['session_id']}", headers=headers)
                one.raise_for_status()
                count("read")
                await asyncio.sleep(0.1)

        async def writers() -> None:
            # Now and then: a new login, a bad one, a session created and revoked.
            headers = {"Authorization": f"Bearer {logins[0]['session_token']}"}
            for n in itertools.count(1):
                if asyncio.get_running_loop().time() > deadline:
                    return
                created = await http.post("/api/session/create", headers=headers)
                created.raise_for_status()
                revoked = await http.delete(
                    f"/api/session/{created.json()['session_id']}", headers=headers
                )
                revoked.raise_for_status()
                count("create+revoke")
                if n % 4 == 0:
                    await login()
                if n % 10 == 5:
                    bad = await http.post(
                        "/api/auth/login", json={"username": "nobody", "password": "wrong" * 4}
                    )
                    assert bad.status_code == 401, bad.text
                    count("bad login")
                await asyncio.sleep(2.5)

        async def agent() -> None:
            # One socket held open, an echo every second or so.
            ws_url = url.replace("http://", "ws://", 1) + AGENT_PATH
            token = logins[1]["session_token"]
            protocols = [Subprotocol("symphainy.v1"), Subprotocol(f"bearer.{token}")]
            async with connect(ws_url, subprotocols=protocols) as ws:
                for n in itertools.count():
                    if asyncio.get_running_loop().time() > deadline:
                        return
                    frame = {"type": "intent", "id": str(n), "intent": "echo"}
                    await ws.send(json.dumps(frame | {"payload": {"items": [1, 2]}}))
                    while True:
                        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        if reply.get("id") == str(n) and reply["type"] in ("result", "error"):
                            break
                    if reply["type"] != "result":
                        raise RuntimeError(f"agent echo failed: {reply}")
                    count("echo")
                    await asyncio.sleep(1.0)

        await asyncio.gather(readers(), writers(), agent())
    return counts


async def screenshot(prometheus_url: str, range_s: int, output: Path, scratch: Path) -> None:
    """Prometheus's graph page of p99 and p50 intent latency over the last ``range_s``
    seconds, once both charts are drawn."""
    query: dict[str, str] = {}
    for n, q in enumerate(("0.99", "0.5")):
        query |= {
            f"g{n}.expr": LATENCY.format(q=q),
            f"g{n}.tab": "0",
            f"g{n}.range_input": f"{range_s}s",
        }
    page_url = f"{prometheus_url}/classic/graph?{urlencode(query)}"
    os.environ["TMPDIR"] = str(scratch)  # Playwright's driver puts chromium's profile here
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = await browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
            await page.add_init_script(ADD_STYLE)
            await page.goto(page_url)
            for n in range(2):
                # Rickshaw draws the lines (SVG paths), then lists the series in the legend.
                await page.locator(f"#graph_wrapper{n} .legend li").first.wait_for()
            await page.screenshot(path=str(output), full_page=True)
        finally:
            await browser.close()


def main() -> None:
    """Start, drive, graph, save; stop everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=105, help="traffic duration")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    if args.seconds <= WARM_UP_S + 10:
        parser.error(f"--seconds must be more than {WARM_UP_S + 10}")
    with tempfile.TemporaryDirectory(prefix="symphainy-shot-") as name:
        tmp = Path(name)
        try:
            with running_up(tmp) as up, running_prometheus(tmp, up.metrics_url) as prometheus:
                password = (tmp / "data" / "admin-password").read_text().strip()
                counts = asyncio.run(traffic(up.url, password, args.seconds))
                print(f"traffic: {counts}")
                asyncio.run(screenshot(prometheus, args.seconds - WARM_UP_S, args.output, tmp))
                print(f"saved {args.output}")
        except BaseException:
            for log in sorted(tmp.glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {log.name}", *tail, sep="\n", file=sys.stderr)
            raise


if __name__ == "__main__":
    main()
