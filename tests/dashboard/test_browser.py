"""Serve the dashboard (`python -m app.dashboard`) and load it in headless Chromium over DevTools.

The page is driven through Chromium's remote-debugging websocket (the `websockets` package Streamlit
already depends on): `--dump-dom` returns before Streamlit's own websocket has delivered anything, so
the test instead evaluates JavaScript until the Vega chart is drawn, then saves a screenshot under
results/dashboard/ (git-ignored) for a human to look at. The time axis is read back from a screenshot
of its labels with Tesseract OCR: Vega draws on a canvas, so the labels are in no DOM node.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from app.common.schema import WindowStats
from app.core.windows import WINDOW_MS
from app.dashboard.charts import MINUTE_MS, time_ticks
from app.localkafka.broker import free_port
from tests.dashboard.conftest import Topics
from tests.dashboard.helpers import final, minute, now_ms, producer_report, seed_metrics, seed_windows, window

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results" / "dashboard"
CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.browser


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout_s}s")
        time.sleep(every_s)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def random_walk(minutes: int, newest: int) -> list[WindowStats]:
    """A plausible market: each minute 4-9 trades wandering from the previous close."""
    rng = random.Random(20261124)
    price = Decimal("67000.00")
    rows = []
    for i in range(minutes, -1, -1):
        prices, qtys = [], []
        for _ in range(rng.randint(4, 9)):
            price += Decimal(rng.randint(-1500, 1500)) / 100
            prices.append(str(price))
            qtys.append(str(Decimal(rng.randint(1, 50000)) / 100000))
        row = window(newest - i * WINDOW_MS, prices, qtys, first_id=(minutes - i) * 10)
        rows.append(final(row) if i else row)
    return rows


@pytest.fixture
def dashboard_url(
    bootstrap: str, topics: Topics, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """The app served by `python -m app.dashboard` on a free loopback port, reading the seeded topics.

    Seeds the minutes given as the fixture's parameter (90 by default) plus the open one.
    """
    minutes = getattr(request, "param", 90)
    rows = random_walk(minutes=minutes, newest=minute(now_ms()) - WINDOW_MS)
    seed_windows(bootstrap, topics.aggregates, rows)
    seed_metrics(bootstrap, topics.metrics, [producer_report(now_ms(), published=1234)])

    port = free_port()
    env = {
        **os.environ,
        "TELEMETRY_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TELEMETRY_AGGREGATES_TOPIC": topics.aggregates,
        "TELEMETRY_METRICS_TOPIC": topics.metrics,
        "TELEMETRY_DEAD_LETTER_TOPIC": topics.dead_letters,
        "PYTHONPATH": str(REPO),
    }
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 - owned by the child
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.dashboard",
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        # Not the repo: the script's own .streamlit/config.toml must be what applies (headless, no
        # usage statistics). The checkout is on the path as the installed package would be.
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "streamlit health check",
            lambda: (
                server.poll() is None and urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read()
            ),
            timeout_s=60,
        )
        yield url
    finally:
        stop_group(server)
        print((tmp_path / "streamlit.log").read_text(errors="replace")[-3000:])


class DevTools:
    """Just enough of the Chrome DevTools protocol: call a method, wait for its answer."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.next_id = 0

    def call(self, method: str, timeout_s: float = 30, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            message = json.loads(self.socket.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return answer["result"].get("value")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    profile = tmp_path / "chromium-profile"
    chromium = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1500,1250",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        active = wait_for(
            "DevTools port file", lambda: (profile / "DevToolsActivePort").read_text().split(), timeout_s=30
        )
        listing = urllib.request.urlopen(f"http://127.0.0.1:{active[0]}/json/list", timeout=5).read()
        page = next(target for target in json.loads(listing) if target["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as socket:
            yield DevTools(socket)
    finally:
        stop_group(chromium)


CHARTS_DRAWN = """
(() => {
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  const drawn = charts.filter(chart => {
    const canvas = chart.querySelector('canvas');
    return canvas ? canvas.width > 200 && canvas.height > 100 : Boolean(chart.querySelector('svg.marks'));
  });
  if (charts.length < 2 || drawn.length < charts.length) return null;
  const page = document.querySelector('[data-testid="stMainBlockContainer"]').getBoundingClientRect();
  return charts.map(chart => {
    const box = chart.getBoundingClientRect();
    const drawing = chart.querySelector('canvas, svg.marks').getBoundingClientRect();
    return {width: box.width, height: box.height, drawingRight: drawing.right, pageRight: page.right};
  });
})()
"""


VOLUME_AXIS_BOX = """
(() => {
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  const box = charts[charts.length - 1].getBoundingClientRect();
  return {x: box.left, y: box.bottom - 40, width: box.width, height: 26};
})()
"""


def time_axis_labels(browser: DevTools, tmp_path: Path) -> list[str]:
    """The volume chart's time-axis labels, left to right, read from a 3x screenshot of the axis strip."""
    box = browser.evaluate(VOLUME_AXIS_BOX)
    shot = browser.call("Page.captureScreenshot", format="png", clip={**box, "scale": 3})
    strip = tmp_path / "time-axis.png"
    strip.write_bytes(base64.b64decode(shot["data"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"time-axis-{len(list(RESULTS.glob('time-axis-*.png')))}.png").write_bytes(strip.read_bytes())
    text = subprocess.run(
        ["tesseract", str(strip), "stdout", "--psm", "7", "-c", "tessedit_char_whitelist=0123456789: "],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return re.findall(r"\b\d{2}:\d{2}\b", text)


def assert_whole_minute_ticks(labels: list[str], span_minutes: int) -> None:
    """Distinct labels, evenly spaced by the whole-minute step the chart chooses for this span."""
    assert len(labels) >= 2, f"too few time labels read: {labels}"
    assert len(set(labels)) == len(labels), f"a time label repeats: {labels}"
    minutes = [int(label[:2]) * 60 + int(label[3:]) for label in labels]
    steps = {(later - earlier) % (24 * 60) for earlier, later in itertools.pairwise(minutes)}
    ticks = time_ticks(span_minutes * MINUTE_MS)
    expected = ticks.step * (60 if ticks.interval == "hour" else 1)
    assert steps == {expected}, f"labels {labels} are not {expected} minutes apart"
    assert all(m % expected == 0 for m in minutes), f"labels {labels} are not on whole {expected} minutes"


@pytest.mark.parametrize("dashboard_url", [3], indirect=True)
def test_a_few_minutes_of_data_get_one_label_per_minute(
    dashboard_url: str, browser: DevTools, tmp_path: Path
) -> None:
    browser.call("Page.enable")
    browser.call("Page.navigate", url=dashboard_url)
    wait_for("both charts to be drawn", lambda: browser.evaluate(CHARTS_DRAWN), timeout_s=60)
    time.sleep(1.0)  # the chart's entry transition
    # 3 final minutes and the open one: ticks on each whole minute, each labelled once.
    assert_whole_minute_ticks(time_axis_labels(browser, tmp_path), span_minutes=4)


def test_dashboard_renders_the_candlestick_chart_in_chromium(
    dashboard_url: str, browser: DevTools, bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    browser.call("Page.enable")
    browser.call("Page.navigate", url=dashboard_url)

    price, volume = wait_for("both charts to be drawn", lambda: browser.evaluate(CHARTS_DRAWN), timeout_s=60)
    text = wait_for(
        "the KPIs",
        lambda: (t := browser.evaluate("document.body.innerText")) and "Trades/s" in t and "bps" in t and t,
        timeout_s=30,
    )
    time.sleep(1.0)  # let the chart's entry transition settle before the screenshot
    shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dashboard.png").write_bytes(base64.b64decode(shot["data"]))

    for chart in (price, volume):
        assert chart["width"] > 600
        assert chart["drawingRight"] <= chart["pageRight"], "the chart overflows the page"
    assert price["height"] > 300
    assert volume["height"] > 100
    assert "Live Bitcoin trades" in text
    assert "Last price" in text
    assert "connected" in text
    assert "unreachable" not in text
    assert (RESULTS / "dashboard.png").stat().st_size > 20_000
    # 90 final minutes and the open one, with the default 2 h span.
    assert_whole_minute_ticks(time_axis_labels(browser, tmp_path), span_minutes=91)

    # The live fragment refreshes by itself (every TELEMETRY_DASHBOARD_REFRESH_S, 2 s by default):
    # a new window shows up without reloading the page.
    assert "68,123.45" not in text
    seed_windows(
        bootstrap, topics.aggregates, [window(minute(now_ms()), ["68000.00", "68123.45"], first_id=9999)]
    )
    wait_for(
        "the new price", lambda: "68,123.45" in browser.evaluate("document.body.innerText"), timeout_s=20
    )
