"""Helpers of the producer's Kafka tests: run the service in a thread, read what it published."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from app.common.schema import RecordError, Trade
from app.common.settings import Settings
from app.producer.metrics import ProducerMetrics
from app.producer.service import ProducerService
from app.producer.source import TradeSource
from tests.support.kafka import read_all


@contextmanager
def running_service(
    settings: Settings,
    make_source: Callable[[ProducerMetrics, threading.Event], TradeSource],
    producer_overrides: Mapping[str, Any] | None = None,
) -> Iterator[ProducerMetrics]:
    """The producer's run loop in a thread, stopped (and flushed) on exit."""
    stop = threading.Event()
    metrics = ProducerMetrics(budget_per_minute=settings.weight_budget_per_minute)
    service = ProducerService(
        settings,
        make_source(metrics, stop),
        metrics,
        stop,
        metrics_interval_s=0.5,
        producer_overrides=producer_overrides,
    )
    thread = threading.Thread(target=service.run, name="producer-under-test", daemon=True)
    thread.start()
    try:
        yield metrics
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the producer did not stop within 30 s"


def end_offset_total(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return sum(ends.values())
    finally:
        consumer.close()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


def published_trades(bootstrap: str, topic: str) -> list[Trade]:
    """Parseable trades of the topic in partition/offset order (per symbol: publishing order)."""
    trades = []
    for record in read_all(bootstrap, topic, timeout_s=30):
        try:
            trade = Trade.from_json(record.value)
        except RecordError:
            continue
        assert record.key == trade.symbol.encode(), "key = symbol"
        assert record.timestamp == trade.trade_time, "Kafka timestamp = trade time"
        trades.append(trade)
    return trades


def published_ids(bootstrap: str, topic: str) -> dict[str, list[int]]:
    """The ids of the topic's trades per symbol, in publishing order."""
    result: dict[str, list[int]] = {}
    for trade in published_trades(bootstrap, topic):
        result.setdefault(trade.symbol, []).append(trade.trade_id)
    return result


def assert_exactly_once(ids: list[int], first: int, last: int) -> None:
    """ids is first..last, each once, in order: no loss, no duplicate, no reordering."""
    duplicates = len(ids) - len(set(ids))
    missing = sorted(set(range(first, last + 1)) - set(ids))
    assert duplicates == 0, f"{duplicates} duplicated ids"
    assert not missing, f"{len(missing)} missing ids, first {missing[:5]}"
    assert ids == list(range(first, last + 1)), "ids out of order"
