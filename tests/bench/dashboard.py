"""Server time of one rerun of the dashboard's live fragment with 24 h of 1-minute windows per symbol.

Streamlit's AppTest runs the real page against the real broker; the page's own caption reports how
long `live_panel` (the fragment: KPIs, both charts with 1440 candles, health) took on the server.
The whole script's rerun time (AppTest wall clock, static frame included) is reported beside it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import streamlit as st
from streamlit.testing.v1 import AppTest

from app.common.schema import now_ms
from app.core.windows import WINDOW_MS
from tests.dashboard.helpers import seed_windows, window
from tests.support.kafka import create_topics, unique_topic
from tests.support.pipeline import REPO_ROOT

APP = str(REPO_ROOT / "app" / "dashboard" / "streamlit_app.py")
SYMBOLS = ("BTCUSDT", "ETHUSDT")
MINUTES = 1440


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def windows_shown(at: AppTest) -> int:
    """From the caption "<n> windows of <symbol> in memory · ... · rendered in <t> ms"."""
    return int(at.caption[-1].value.split(" windows of ", 1)[0]) if at.caption else 0


def fragment_ms(at: AppTest) -> float:
    caption = at.caption[-1].value
    return float(caption.rsplit("rendered in ", 1)[1].removesuffix(" ms"))


def run_dashboard(bootstrap: str, reruns: int) -> dict[str, Any]:
    aggregates, metrics, dead = unique_topic("agg"), unique_topic("metrics"), unique_topic("dlq")
    create_topics(bootstrap, [aggregates, metrics, dead])
    newest = now_ms() - now_ms() % WINDOW_MS
    for n, symbol in enumerate(SYMBOLS):
        prices = ["67000.00", "67010.50", "66990.25"] if n == 0 else ["3000.00", "3001.50", "2999.75"]
        rows = [window(newest - i * WINDOW_MS, prices, symbol=symbol, first_id=3 * i) for i in range(MINUTES)]
        seed_windows(bootstrap, aggregates, rows)
    env = {
        "TELEMETRY_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TELEMETRY_AGGREGATES_TOPIC": aggregates,
        "TELEMETRY_METRICS_TOPIC": metrics,
        "TELEMETRY_DEAD_LETTER_TOPIC": dead,
        "TELEMETRY_SYMBOLS": ",".join(SYMBOLS),
    }
    st.cache_resource.clear()
    try:
        with environment(env):
            at = AppTest.from_file(APP, default_timeout=60)
            at.run()
            deadline = time.monotonic() + 60
            while windows_shown(at) < MINUTES - 1:  # the oldest may age out as a minute ends
                assert time.monotonic() < deadline, "the dashboard never showed the seeded day"
                time.sleep(0.5)
                at.run()
            at.radio[0].set_value("24 h").run()
            fragment, script = [], []
            for _ in range(reruns):
                started = time.perf_counter()
                at.run()
                script.append((time.perf_counter() - started) * 1000)
                fragment.append(fragment_ms(at))
                assert not at.exception, at.exception
    finally:
        st.cache_resource.clear()
    return {
        "windows_per_symbol": MINUTES,
        "symbols": len(SYMBOLS),
        "reruns": reruns,
        "fragment_ms_median": statistics.median(fragment),
        "fragment_ms_max": max(fragment),
        "script_rerun_ms_median": round(statistics.median(script), 1),
    }
