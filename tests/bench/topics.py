"""Kafka I/O of the benchmark: fast bulk writes, topic sizes, and the pipeline's topics read back."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException, Producer
from kafka import KafkaConsumer, TopicPartition

from app.common.schema import SparkLedger, SparkMetric, Trade, WindowStats, metric_from_json
from tests.bench.stats import RowSeen
from tests.support.kafka import read_all


def produce_fast(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes, int]]) -> int:
    """Write (key, value, timestamp_ms) records as fast as librdkafka batches them; raises if any
    record was not delivered. Returns how many were written."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "enable.idempotence": True,
            "queue.buffering.max.messages": 500_000,
        }
    )
    failures: list[str] = []

    def report(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    count = 0
    for key, value, timestamp in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, timestamp=timestamp, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120) or failures:
        raise KafkaException(f"{len(failures)} records to {topic} not delivered: {failures[:3]}")
    return count


class TopicSize:
    """Total end offset of a topic over its partitions (records written, for a never-compacted one)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        partitions = self._consumer.partitions_for_topic(topic) or set()
        self._tps = [TopicPartition(topic, p) for p in sorted(partitions)]

    def __call__(self) -> int:
        return sum(self._consumer.end_offsets(self._tps).values())

    def close(self) -> None:
        self._consumer.close()


def aggregates(bootstrap: str, topic: str) -> tuple[list[RowSeen], dict[str, WindowStats]]:
    """Every aggregates record as RowSeen (topic order), and the final row of each closed window."""
    seen, finals = [], {}
    for record in read_all(bootstrap, topic, timeout_s=120):
        row = WindowStats.from_json(record.value)
        seen.append(RowSeen(row.symbol, row.window_start, row.last_trade_id, record.timestamp))
        if row.is_final:
            finals[row.key] = row
    return seen, finals


def final_keys(bootstrap: str, topic: str) -> set[str]:
    return {
        record.key.decode()
        for record in read_all(bootstrap, topic, timeout_s=120)
        if json.loads(record.value)["is_final"]
    }


def raw_trades(bootstrap: str, topic: str) -> list[Trade]:
    return [Trade.from_json(r.value) for r in read_all(bootstrap, topic, timeout_s=600)]


def spark_metrics(bootstrap: str, topic: str) -> list[SparkMetric]:
    """The Spark job's progress reports on the metrics topic, decoded by their contract."""
    reports = [metric_from_json(r.key, r.value) for r in read_all(bootstrap, topic, timeout_s=60)]
    return [m for m in reports if isinstance(m, SparkMetric)]


def last_ledgers(bootstrap: str, topic: str) -> list[SparkLedger]:
    """The latest `SparkLedger` of each symbol: its counts are cumulative, so the one with most records."""
    latest: dict[str, SparkLedger] = {}
    for record in read_all(bootstrap, topic, timeout_s=60):
        metric = metric_from_json(record.key, record.value)
        if isinstance(metric, SparkLedger):
            held = latest.get(metric.symbol)
            if held is None or (metric.records, metric.accounted) >= (held.records, held.accounted):
                latest[metric.symbol] = metric
    return list(latest.values())


def last_vwaps(bootstrap: str, topic: str) -> dict[str, float]:
    """The peer reference's latest VWAP of each window (update mode: the last row of a key wins)."""
    return {
        record.key.decode(): json.loads(record.value)["vwap"]
        for record in read_all(bootstrap, topic, timeout_s=120)
    }
