"""The Streamlit app through AppTest, reading the real broker (no timers fire in AppTest)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app.common.schema import FieldDifference, ReconcileStatus, Reconciliation
from app.core.windows import WINDOW_MS
from app.localkafka.broker import free_port
from tests.dashboard.conftest import Topics, new_topics
from tests.dashboard.helpers import (
    final,
    ledger_report,
    minute,
    now_ms,
    producer_report,
    seed_metrics,
    seed_windows,
    spark_report,
    window,
)
from tests.support.kafka import create_topics, unique_topic, write_raw

APP = str(Path(__file__).resolve().parents[2] / "app" / "dashboard" / "streamlit_app.py")


@pytest.fixture(autouse=True)
def fresh_feeds() -> Iterator[None]:
    """Each test gets its own feed; clearing the cache closes the feeds (their on_release)."""
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def configure(monkeypatch: pytest.MonkeyPatch, bootstrap: str, topics: Topics) -> None:
    monkeypatch.setenv("TELEMETRY_KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("TELEMETRY_AGGREGATES_TOPIC", topics.aggregates)
    monkeypatch.setenv("TELEMETRY_METRICS_TOPIC", topics.metrics)
    monkeypatch.setenv("TELEMETRY_DEAD_LETTER_TOPIC", topics.dead_letters)
    monkeypatch.setenv("TELEMETRY_SYMBOLS", "BTCUSDT")


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def chart_rows(at: AppTest) -> int:
    """Rows the price and volume charts show (asserted equal)."""
    rows = []
    price, volume = at.get("vega_lite_chart")
    for chart in (price, volume):
        spec = json.loads(chart.proto.spec)
        assert spec["data"] == {"name": "candles"}
        (dataset,) = chart.proto.datasets
        assert dataset.name == "candles"
        rows.append(int(pa.ipc.open_stream(dataset.data.data).read_all().num_rows))
    assert "layer" in json.loads(price.proto.spec)
    assert rows[0] == rows[1]
    return rows[0]


def test_shows_kpis_chart_and_health_from_kafka(
    monkeypatch: pytest.MonkeyPatch, bootstrap: str, topics: Topics
) -> None:
    configure(monkeypatch, bootstrap, topics)
    current = minute(now_ms())
    # The newest window is this minute's and the one before it the previous minute's, both with 90
    # trades, so "trades/s over the last completed minute" is 1.50 whether the app runs in this
    # minute or, on a slow machine, after it has turned.
    rows = [
        final(window(current - WINDOW_MS, ["99.00"] * 90, first_id=1)),
        window(current, ["100.00"] * 30 + ["102.00"] * 60, ["1"] * 30 + ["1.5"] * 60, first_id=100),
        window(current, ["3000.00"], symbol="ETHUSDT", first_id=1000),
    ]
    seed_windows(bootstrap, topics.aggregates, rows)
    seed_metrics(
        bootstrap,
        topics.metrics,
        [
            spark_report("ledger", 7, now_ms()),
            producer_report(now_ms(), published=500, http_errors={"502": 1}, rate_limited_429=2),
            # 9 records read: 4 in final windows, 2 late, 2 dead letters, 1 in an open window.
            ledger_report("BTCUSDT", records=6, final_trades=3, open_trades=1, late=2),
            ledger_report(
                "BTCUSDT", records=7, final_trades=4, open_trades=1, late=2, late_quote_volume="250.5"
            ),
            ledger_report("", records=2, dead_letters=2),
        ],
    )
    write_raw(bootstrap, topics.dead_letters, [(b"k", b"garbage", None)] * 4)

    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    time.sleep(2.5)  # the dead-letter count is measured every 2 s by the feed's thread
    at.run()

    assert not at.exception
    assert not at.error
    shown = metrics(at)
    assert shown["Last price"] == "102.00"
    # (30 * 100 + 90 * 102) / 120 = 101.5
    assert shown["VWAP, current window"] == "101.50000000"
    # (102 - 101.5) / 101.5 * 10_000 = 49.2610...
    assert shown["Price vs VWAP"] == "+49.26 bps"
    assert shown["Trades/s"] == "1.50"
    assert shown["Late trades"] == "2"
    assert "quote volume 250.5 (" in next(m.proto.help for m in at.metric if m.label == "Late trades")
    assert shown["Dead letters"] == "4"
    assert shown["Raw records accounted"] == "88.88 %"  # 8 of 9, truncated
    assert shown["Producer errors"] == "3"
    assert shown["Kafka"] == "connected"
    assert shown["Data freshness"].endswith(" s") or shown["Data freshness"].endswith(" min")
    assert chart_rows(at) == 2
    assert at.selectbox[0].options == ["BTCUSDT", "ETHUSDT"]

    at.selectbox[0].select("ETHUSDT").run()
    assert metrics(at)["Last price"] == "3,000.00"
    assert chart_rows(at) == 1


def test_span_control_limits_the_chart_to_recent_windows(
    monkeypatch: pytest.MonkeyPatch, bootstrap: str, topics: Topics
) -> None:
    configure(monkeypatch, bootstrap, topics)
    newest = minute(now_ms()) - WINDOW_MS
    rows = [final(window(newest - i * WINDOW_MS, ["100.00"], first_id=i)) for i in range(200)]
    seed_windows(bootstrap, topics.aggregates, rows)

    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert at.radio[0].value == "2 h"
    assert chart_rows(at) == 120
    at.radio[0].set_value("30 min").run()
    assert chart_rows(at) == 30
    at.radio[0].set_value("24 h").run()
    assert chart_rows(at) == 200


def test_new_rows_appear_on_the_next_run(
    monkeypatch: pytest.MonkeyPatch, bootstrap: str, topics: Topics
) -> None:
    configure(monkeypatch, bootstrap, topics)
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert any("No data for BTCUSDT yet" in info.value for info in at.info)
    assert not at.get("vega_lite_chart")

    start = minute(now_ms()) - WINDOW_MS
    seed_windows(bootstrap, topics.aggregates, [window(start, ["100.00", "100.10"])])
    deadline = time.monotonic() + 10
    while not at.get("vega_lite_chart"):
        assert time.monotonic() < deadline, "the feed thread did not deliver the new row"
        time.sleep(0.3)
        at.run()
    assert metrics(at)["Last price"] == "100.10"


def test_kafka_down_shows_a_clear_error_without_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    configure(monkeypatch, address, Topics("agg", "metrics", "dlq"))

    at = AppTest.from_file(APP, default_timeout=30)
    started = time.monotonic()
    at.run()
    took = time.monotonic() - started

    assert not at.exception
    assert took < 5
    (error,) = at.error
    assert "unreachable" in error.value
    assert address in error.value
    assert any("No data for BTCUSDT yet" in info.value for info in at.info)
    assert metrics(at)["Kafka"] == "unreachable"
    assert not at.get("vega_lite_chart")


def test_topics_not_created_yet_is_explained(monkeypatch: pytest.MonkeyPatch, bootstrap: str) -> None:
    missing = new_topics()
    configure(monkeypatch, bootstrap, missing)
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    (warning,) = at.warning
    assert missing.aggregates in warning.value
    assert not at.error


def test_a_rerun_shows_24_hours_of_windows(
    monkeypatch: pytest.MonkeyPatch, bootstrap: str, topics: Topics
) -> None:
    # Speed is a benchmark's business (issue 5); this checks a full day renders and reports its time.
    configure(monkeypatch, bootstrap, topics)
    # A full day: the open window and the 1439 before it, all within the 24 h bound.
    newest = minute(now_ms())
    rows = [
        window(newest - i * WINDOW_MS, ["100.00", "100.50", "99.75"], first_id=3 * i) for i in range(1440)
    ]
    seed_windows(bootstrap, topics.aggregates, rows)

    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.radio[0].set_value("24 h").run()
    assert chart_rows(at) >= 1439  # 1440 unless a minute ends meanwhile and the oldest ages out
    at.run()
    caption = at.caption[-1].value
    assert "windows of BTCUSDT" in caption
    assert float(caption.rsplit("rendered in ", 1)[1].removesuffix(" ms")) > 0


def test_reconciliation_shows_matched_minutes_and_raises_an_alarm_for_a_mismatch(
    monkeypatch: pytest.MonkeyPatch, bootstrap: str, topics: Topics
) -> None:
    configure(monkeypatch, bootstrap, topics)
    reconciliations = unique_topic("recon")
    create_topics(bootstrap, [reconciliations])
    monkeypatch.setenv("TELEMETRY_RECONCILIATION_TOPIC", reconciliations)
    start = minute(now_ms()) - 3 * WINDOW_MS
    seed_windows(bootstrap, topics.aggregates, [final(window(start, ["100.00"]))])
    records = [
        Reconciliation("BTCUSDT", start, ReconcileStatus.MATCHED, checked_at=1),
        Reconciliation(
            "BTCUSDT",
            start + WINDOW_MS,
            ReconcileStatus.MISMATCHED,
            (FieldDifference("trade_count", Decimal(29), Decimal(30)),),
            checked_at=1,
        ),
    ]
    write_raw(bootstrap, reconciliations, [(r.key.encode(), r.to_json(), None) for r in records])

    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception
    (alarm,) = at.error
    assert "1 of 2 minutes matched" in alarm.value
    assert "trade_count 29 vs exchange 30 (-1)" in alarm.value
