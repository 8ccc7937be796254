"""The producer's run loop end to end on the real broker: fake exchange or replay -> raw topic."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from app.common.settings import Settings
from app.producer.binance import BinanceSource
from app.producer.kafka_io import home_partition
from app.producer.metrics import ProducerMetrics
from app.producer.replay import ReplaySource
from app.producer.source import TradeSource
from app.producer.trades import trade_from_binance
from tests.producer.kafka_helpers import (
    assert_exactly_once,
    end_offset_total,
    published_ids,
    published_trades,
    running_service,
    wait_for,
)
from tests.support.fake_exchange import FakeExchange
from tests.support.kafka import create_topics, read_all, unique_topic, write_raw

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _settings(bootstrap: str, exchange: FakeExchange | None = None, **values: Any) -> Settings:
    metrics = unique_topic("metrics")
    create_topics(bootstrap, [metrics])
    if "raw_topic" not in values:
        values["raw_topic"] = unique_topic("raw")
        create_topics(bootstrap, [values["raw_topic"]], partitions=2)
    base: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "metrics_topic": metrics,
        "symbols": SYMBOLS,
        "poll_interval_s": 0.1,
        "http_timeout_s": 0.5,
        "binance_base_url": exchange.base_url if exchange else "http://127.0.0.1:9",
    }
    return Settings(**(base | values))


def _binance(settings: Settings) -> Callable[[ProducerMetrics, threading.Event], TradeSource]:
    def make(metrics: ProducerMetrics, stop: threading.Event) -> TradeSource:
        return BinanceSource(settings, metrics, stop)

    return make


def _caught_up(settings: Settings, exchange: FakeExchange, symbols: tuple[str, ...]) -> bool:
    expected = sum(len(exchange.trades(s)) for s in symbols)
    return end_offset_total(settings.kafka_bootstrap_servers, settings.raw_topic) >= expected


def test_every_trade_of_several_symbols_lands_once_in_order_with_metrics(bootstrap: str) -> None:
    # Limits well above what fast polling of two symbols spends: test_binance_source covers them.
    exchange = FakeExchange(symbols=SYMBOLS, initial_trades=1500, weight_limit=100_000).start()
    settings = _settings(bootstrap, exchange, weight_budget_per_minute=50_000)
    first = {s: exchange.trade_ids(s)[500] for s in SYMBOLS}  # a fresh start takes the latest page
    with exchange, running_service(settings, _binance(settings)) as metrics:
        wait_for(lambda: metrics.trades_published >= 2000, 20, "the first page of each symbol")
        exchange.start_ticker(trades_per_s=100)
        time.sleep(1.0)
        exchange.append("BTCUSDT", count=2500)  # a gap the next poll cannot cover
        wait_for(lambda: metrics.gaps_backfilled >= 1, 20, "the back-fill")
        exchange.stop_ticker()
        expected = sum(len(exchange.trade_ids(s)[500:]) for s in SYMBOLS)
        wait_for(lambda: metrics.trades_published == expected, 20, "every trade")
    by_symbol = published_ids(bootstrap, settings.raw_topic)
    for symbol in SYMBOLS:
        assert_exactly_once(by_symbol[symbol], first[symbol], exchange.trade_ids(symbol)[-1])
    # One symbol, one partition: the per-symbol order is Kafka's order.
    partitions = {(r.key, r.partition) for r in read_all(bootstrap, settings.raw_topic)}
    assert partitions == {(s.encode(), home_partition(s, 2)) for s in SYMBOLS}, "where the tail reader looks"
    reports = [
        json.loads(r.value) for r in read_all(bootstrap, settings.metrics_topic) if r.key == b"producer"
    ]
    assert reports, "metrics were published"
    assert reports[-1]["trades_published"] == expected
    assert reports[-1]["gaps_backfilled"] >= 1
    assert reports[-1]["budget_per_minute"] == settings.weight_budget_per_minute


def test_a_restart_resumes_after_the_topic_tail_skipping_bad_records(
    bootstrap: str, exchange: FakeExchange
) -> None:
    settings = _settings(bootstrap, exchange, symbols=("BTCUSDT",))
    book = exchange.trades("BTCUSDT")
    # A previous run published up to the 700th trade, then something wrote garbage.
    published = [trade_from_binance(t, "BTCUSDT", 1) for t in book[:700]]
    write_raw(bootstrap, settings.raw_topic, [(b"BTCUSDT", t.to_json(), t.trade_time) for t in published])
    write_raw(bootstrap, settings.raw_topic, [(b"BTCUSDT", b"{not json", None)])
    with running_service(settings, _binance(settings)) as metrics:
        wait_for(lambda: metrics.trades_published == 800, 20, "the 800 missing trades")
    ids = published_ids(bootstrap, settings.raw_topic)["BTCUSDT"]
    assert_exactly_once(ids, book[0]["id"], book[-1]["id"])


def test_replay_publishes_a_continuous_stream_and_resumes(bootstrap: str) -> None:
    raw = unique_topic("raw")
    # Replayed 2025 trade times would fall to the default 7-day retention at its next check.
    create_topics(bootstrap, [raw], configs={"retention.ms": "-1"})
    settings = _settings(bootstrap, symbols=("BTCUSDT",), raw_topic=raw, source="replay", replay_speed=0.0)

    def replay(_metrics: ProducerMetrics, stop: threading.Event) -> TradeSource:
        return ReplaySource(settings, stop)

    for run in (1, 2):
        with running_service(settings, replay) as metrics:
            wait_for(lambda: metrics.trades_published >= 6000, 30, f"run {run} to publish")
    trades = published_trades(bootstrap, settings.raw_topic)
    ids = [t.trade_id for t in trades]
    # The sample has 4338 trades: both runs together pass the loop point at least twice.
    in_topic = end_offset_total(bootstrap, settings.raw_topic)
    assert len(ids) == in_topic, "every record of the topic is a trade"
    assert len(ids) >= 12_000
    assert_exactly_once(ids, 4_500_000_000, ids[-1])
    times = [t.trade_time for t in trades]
    assert times == sorted(times)
