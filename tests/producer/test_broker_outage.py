"""Kafka outages: the producer waits or rebuilds and re-syncs, and loses and doubles nothing.

Uses a broker of its own (stopped and restarted on the same ports and log), not the session's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from app.common.settings import Settings
from app.localkafka.broker import LocalBroker
from app.producer.binance import BinanceSource
from app.producer.metrics import ProducerMetrics
from app.producer.source import TradeSource
from tests.producer.kafka_helpers import (
    assert_exactly_once,
    end_offset_total,
    published_ids,
    running_service,
    wait_for,
)
from tests.support.fake_exchange import FakeExchange
from tests.support.kafka import create_topics, unique_topic


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = LocalBroker(data_dir=tmp_path_factory.mktemp("outage-kafka"), heap="384m")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _run_through_outage(
    broker: LocalBroker, outage_s: float, overrides: Mapping[str, Any] | None
) -> ProducerMetrics:
    bootstrap = broker.bootstrap_servers
    raw, metrics_topic = unique_topic("raw"), unique_topic("metrics")
    create_topics(bootstrap, [raw, metrics_topic])
    with FakeExchange(symbols=("BTCUSDT",), initial_trades=1000, weight_limit=100_000) as exchange:
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            raw_topic=raw,
            metrics_topic=metrics_topic,
            binance_base_url=exchange.base_url,
            poll_interval_s=0.2,
            weight_budget_per_minute=50_000,
        )

        def source(metrics: ProducerMetrics, stop: threading.Event) -> TradeSource:
            return BinanceSource(settings, metrics, stop)

        with running_service(settings, source, overrides) as metrics:
            wait_for(lambda: metrics.trades_published >= 1000, 30, "the first page")
            exchange.start_ticker(trades_per_s=100)
            time.sleep(1.0)
            broker.stop()
            time.sleep(outage_s)  # trades keep coming while Kafka is away
            broker.start()
            exchange.stop_ticker()
            first_id, last_id = exchange.trade_ids("BTCUSDT")[0], exchange.trade_ids("BTCUSDT")[-1]
            wait_for(lambda: end_offset_total(bootstrap, raw) >= last_id - first_id + 1, 30, "catching up")
            time.sleep(1.0)  # anything extra (a duplicate) would show up now
        ids = published_ids(bootstrap, raw)["BTCUSDT"]
        assert_exactly_once(ids, first_id, last_id)
        return metrics


def test_an_outage_is_waited_out_in_order(own_broker: LocalBroker) -> None:
    metrics = _run_through_outage(own_broker, outage_s=3.0, overrides=None)
    # Deliveries never time out: the queue simply drains once Kafka is back.
    assert metrics.producer_rebuilds == 0


def test_failed_deliveries_rebuild_the_producer_and_resync_from_the_tail(own_broker: LocalBroker) -> None:
    # A delivery timeout shorter than the outage turns it into failed deliveries.
    metrics = _run_through_outage(own_broker, outage_s=3.0, overrides={"message.timeout.ms": 2000})
    assert metrics.producer_rebuilds >= 1
