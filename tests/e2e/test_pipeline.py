"""End to end, every part real: fake Binance on loopback -> producer -> Kafka 4 -> Spark 4 -> Kafka
-> the dashboard's data layer.

The exchange serves trades for two symbols whose trade times are shuffled by up to 4 s against their
ids, fed in chunks and once in a burst larger than one `/trades` page, so the producer must
back-fill.

The test compresses four minutes of trades into seconds, so a chunk appended now is dated before
the producer's earlier polls. A real exchange never does that, and the producer's event-time hold
relies on it: a trade it has not seen yet is newer than its last request. Here one symbol's burst
could reach the job first and make the other symbol's older trades late. So this run's watermark
is longer than all the trades together, and the closers go out only once every trade is in the raw
topic: no trade can be late, whatever order the producer publishes the symbols in. Lateness is
tested where the feed keeps the symbols together (tests/faults, tests/processing).

Every closed window must equal an independent exact-rational computation, the raw topic must hold
every trade id exactly once, and the dashboard's feed must show the same windows. The observed
trade -> aggregate latency is written to results/.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from app.common.schema import Trade, WindowStats
from app.common.settings import Settings
from app.core.windows import WINDOW_MS, window_start
from app.dashboard.feed import WindowFeed
from tests.support import conservation
from tests.support.fake_exchange import HISTORICAL_TRADES_PATH, TRADES_PATH, FakeExchange
from tests.support.kafka import read_all
from tests.support.pipeline import Process, expected_windows, pipeline_env, wait_for
from tests.support.trades import closer, shuffled_trades

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "results"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
WINDOWS = 4
TRADES_PER_SYMBOL = 2_000
WARM_UP = 50  # trades fed before latency counts: Spark's first batch compiles and warms up
STEADY = 500  # trades fed in small chunks, the live rate whose latency is recorded
MAX_SHUFFLE_MS = 4_000
WATERMARK_MINUTES = WINDOWS + 1  # longer than the trades' whole span: see the module docstring

pytestmark = pytest.mark.e2e


def test_trades_flow_exactly_from_exchange_to_dashboard(bootstrap: str, tmp_path: Path) -> None:
    env = pipeline_env(
        bootstrap, tmp_path / "checkpoints", SYMBOLS, TELEMETRY_WATERMARK_DELAY=f"{WATERMARK_MINUTES} minutes"
    )
    settings = Settings.from_env(env)

    def live_rows() -> int:
        return len(read_all(settings.kafka_bootstrap_servers, settings.aggregates_topic))

    def raw_records() -> int:
        return len(read_all(settings.kafka_bootstrap_servers, settings.raw_topic))

    def final_rows() -> dict[str, WindowStats]:
        records = read_all(settings.kafka_bootstrap_servers, settings.aggregates_topic)
        rows = [WindowStats.from_json(r.value) for r in records]
        return {w.key: w for w in rows if w.is_final}

    rng = random.Random(11)
    first_window = window_start(int(time.time() * 1000)) - (WINDOWS + WATERMARK_MINUTES + 3) * WINDOW_MS
    processes: list[Process] = []
    with FakeExchange(symbols=SYMBOLS, initial_trades=0, weight_limit=6000) as exchange:
        env["TELEMETRY_BINANCE_BASE_URL"] = exchange.base_url
        try:
            spark = Process("app.processing", env, tmp_path / "processing.log")
            processes.append(spark)
            # Latency is measured from here on, so the job's start-up must be over first.
            wait_for(lambda: "streaming " in spark.log_path.read_text(), 180, "the Spark queries", processes)
            processes.append(Process("app.producer", env, tmp_path / "producer.log"))
            wait_for(lambda: len(exchange.requests(TRADES_PATH)) >= 2, 60, "the first polls", processes)

            planned = {
                s: shuffled_trades(TRADES_PER_SYMBOL, WINDOWS, first_window, rng, MAX_SHUFFLE_MS)
                for s in SYMBOLS
            }
            for symbol in SYMBOLS:
                exchange.append(symbol, trades=planned[symbol][:WARM_UP])
            wait_for(lambda: live_rows() > 0, 180, "the first live row", processes)
            # Small chunks the producer follows poll by poll...
            for offset in range(WARM_UP, WARM_UP + STEADY, 25):
                for symbol in SYMBOLS:
                    exchange.append(symbol, trades=planned[symbol][offset : offset + 25])
                time.sleep(0.5)
            steady_ids = {(s, t["id"]) for s in SYMBOLS for t in exchange.trades(s)[WARM_UP:]}
            # ...then a burst bigger than one /trades page, which it must back-fill.
            for symbol in SYMBOLS:
                exchange.append(symbol, trades=planned[symbol][WARM_UP + STEADY :])
            fed = sum(len(exchange.trades(s)) for s in SYMBOLS)
            wait_for(lambda: raw_records() >= fed, 180, "every trade in the raw topic", processes)
            closing_time = first_window + (WINDOWS + WATERMARK_MINUTES) * WINDOW_MS + 30_000
            for symbol in SYMBOLS:
                exchange.append(symbol, trades=[closer(closing_time)])
            served = {s: exchange.trades(s) for s in SYMBOLS}

            expected: dict[str, dict[str, Any]] = {}
            for symbol in SYMBOLS:
                expected |= expected_windows(symbol, served[symbol][:-1])
            assert len(expected) == WINDOWS * len(SYMBOLS)

            wait_for(lambda: expected.keys() <= final_rows().keys(), 300, "every final window", processes)
            backfills = exchange.requests(HISTORICAL_TRADES_PATH)
        finally:
            for process in reversed(processes):
                process.stop()

    # Stopped as their systemd units stop them, no service logged an error.
    for process in processes:
        lines = process.log_text().splitlines()
        errors = [line for line in lines if " ERROR " in line or "level=ERROR" in line]
        assert not errors, f"{process.module}: {errors[:5]}"

    # The raw topic holds every served trade id exactly once, per symbol.
    raw = [Trade.from_json(r.value) for r in read_all(settings.kafka_bootstrap_servers, settings.raw_topic)]
    for symbol in SYMBOLS:
        ids = [t.trade_id for t in raw if t.symbol == symbol]
        assert sorted(ids) == [t["id"] for t in served[symbol]], f"{symbol}: lost or doubled trades"

    assert backfills, "the burst did not make the producer back-fill from historicalTrades"

    # Every closed window equals the independent computation, to the last decimal.
    finals = final_rows()
    for key, want in expected.items():
        got = finals[key]
        for name, value in want.items():
            assert getattr(got, name) == value, f"{key} {name}: {getattr(got, name)} != {value}"
        assert got.vwap.as_tuple().exponent == -8

    # Every raw record is in exactly one place, and the job read them all.
    books = conservation.measure(settings)
    assert books.holds, books
    assert books.raw == sum(len(trades) for trades in served.values())

    # The dashboard's data layer shows the same closed windows, and every raw record accounted for.
    feed = WindowFeed.from_settings(settings)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            feed.poll()
            shown = {w.key: w for s in SYMBOLS for w in feed.windows(s) if w.is_final}
            if expected.keys() <= shown.keys() and feed.health().accounting.records == books.raw:
                break
        assert {k: shown[k] for k in expected} == {k: finals[k] for k in expected}
        shown_books = feed.health().accounting
        assert (shown_books.accounted, shown_books.open_trades) == (
            books.accounted - books.open_trades,
            books.open_trades,
        )
    finally:
        feed.close()

    record_latency(settings, raw, steady_ids)


def record_latency(settings: Settings, raw: list[Trade], steady_ids: set[tuple[str, int]]) -> None:
    """Trade ingest -> first live aggregate row that includes it (by the row's last trade id), for
    the trades fed at a steady rate after warm-up."""
    ingest = {(t.symbol, t.trade_id): t.ingest_time for t in raw}
    latencies = []
    seen: set[tuple[str, int]] = set()
    for record in read_all(settings.kafka_bootstrap_servers, settings.aggregates_topic):
        row = WindowStats.from_json(record.value)
        key = (row.symbol, row.last_trade_id)
        if row.is_final or key in seen or key not in steady_ids:
            continue
        seen.add(key)
        latencies.append(record.timestamp - ingest[key])
    assert latencies, "no live rows were emitted"
    latencies.sort()
    figures = {
        "rows": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
        "max_ms": latencies[-1],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "e2e-latency.json").write_text(json.dumps(figures, indent=2))
