"""The whole pipeline over SASL_SSL, every part real: fake Binance on loopback -> producer -> a Kafka 4
broker that speaks only TLS with SCRAM-SHA-512 logins -> the Spark job -> Kafka -> the dashboard's
feed. The topics are made by the app's admin helper, over the same listener, and every client is
configured by the same four TELEMETRY_KAFKA_* settings."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from app.common.kafka_security import kafka_python_config
from app.common.schema import Trade, WindowStats, metric_from_json
from app.common.settings import Settings
from app.common.topics import ensure_topics
from app.core.windows import WINDOW_MS, window_start
from app.dashboard.feed import WindowFeed
from tests.security.conftest import SecureKafka
from tests.support.fake_exchange import FakeExchange
from tests.support.kafka import read_all, unique_topic
from tests.support.pipeline import Process, expected_windows, process_env, wait_for
from tests.support.trades import closer, shuffled_trades

SYMBOL = "BTCUSDT"
WINDOWS = 2
TRADES = 400

pytestmark = pytest.mark.e2e


def secure_env(kafka: SecureKafka, checkpoints: Path) -> dict[str, str]:
    topics = {
        "TELEMETRY_RAW_TOPIC": unique_topic("raw"),
        "TELEMETRY_AGGREGATES_TOPIC": unique_topic("agg"),
        "TELEMETRY_DEAD_LETTER_TOPIC": unique_topic("dlq"),
        "TELEMETRY_METRICS_TOPIC": unique_topic("metrics"),
    }
    return process_env(kafka.broker.bootstrap_servers, checkpoints, (SYMBOL,)) | topics | kafka.env()


@pytest.mark.timeout(1200)
def test_trades_flow_over_sasl_ssl_through_every_client(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    env = secure_env(secure_kafka, tmp_path / "checkpoints")
    settings = Settings.from_env(env)
    ensure_topics(settings, partitions=2)
    security = kafka_python_config(settings)

    def records(topic: str) -> list[Any]:
        return read_all(settings.kafka_bootstrap_servers, topic, security=security)

    def final_rows() -> dict[str, WindowStats]:
        rows = [WindowStats.from_json(r.value) for r in records(settings.aggregates_topic)]
        return {w.key: w for w in rows if w.is_final}

    rng = random.Random(5)
    first_window = window_start(int(time.time() * 1000)) - (WINDOWS + 3) * WINDOW_MS
    processes: list[Process] = []
    with FakeExchange(symbols=(SYMBOL,), initial_trades=0, weight_limit=6000) as exchange:
        env["TELEMETRY_BINANCE_BASE_URL"] = exchange.base_url
        try:
            spark = Process("app.processing", env, tmp_path / "processing.log")
            processes.append(spark)
            processes.append(Process("app.producer", env, tmp_path / "producer.log"))
            # On a loaded machine the job's start alone can take minutes: wait for it apart.
            wait_for(lambda: "streaming " in spark.log_text(), 420, "the Spark queries", processes)
            exchange.append(SYMBOL, trades=shuffled_trades(TRADES, WINDOWS, first_window, rng, 3_000))
            exchange.append(SYMBOL, trades=[closer(first_window + (WINDOWS + 1) * WINDOW_MS + 30_000)])
            served = exchange.trades(SYMBOL)
            expected = expected_windows(SYMBOL, served[:-1])
            assert len(expected) == WINDOWS
            wait_for(lambda: expected.keys() <= final_rows().keys(), 300, "every final window", processes)
        finally:
            for process in reversed(processes):
                process.stop()

    raw = [Trade.from_json(r.value) for r in records(settings.raw_topic)]
    assert sorted(t.trade_id for t in raw) == [t["id"] for t in served], "lost or doubled trades"

    finals = final_rows()
    for key, want in expected.items():
        for name, value in want.items():
            assert getattr(finals[key], name) == value, f"{key} {name}"

    # The producer's metrics, the Spark job's progress listener and its stateful step (the ledger,
    # written through the job's own Kafka sink) all got through.
    metrics = [metric_from_json(r.key, r.value) for r in records(settings.metrics_topic)]
    sources = {metric.SOURCE for metric in metrics if metric is not None}
    assert sources == {"producer", "spark", "spark-ledger"}, sources

    feed = WindowFeed.from_settings(settings)
    try:
        deadline = time.monotonic() + 60
        shown: dict[str, WindowStats] = {}
        while time.monotonic() < deadline and not expected.keys() <= shown.keys():
            feed.poll()
            shown = {w.key: w for w in feed.windows(SYMBOL) if w.is_final}
        assert {k: shown[k] for k in expected} == {k: finals[k] for k in expected}
    finally:
        feed.close()
