"""Helpers for tests that talk to the real broker: topics, reading a topic whole, writing raw bytes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.fetcher import ConsumerRecord


def unique_topic(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int = 1, configs: Mapping[str, str] | None = None
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests-admin")
    try:
        topic_configs = dict(configs or {})
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=topic_configs) for name in names])
    finally:
        admin.close()


def read_all(
    bootstrap: str, topic: str, timeout_s: float = 10.0, security: Mapping[str, Any] | None = None
) -> list[ConsumerRecord]:
    """Every record currently in the topic (all partitions), in partition then offset order;
    `security` is app.common.kafka_security.kafka_python_config's."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **dict(security or {})
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout_s}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def write_raw(bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, bytes, int | None]]) -> None:
    """Write (key, value, timestamp_ms) records as-is, e.g. bad records for dead-letter tests."""
    # Retries: a topic created a moment ago may answer NotLeaderForPartition for a while.
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", retries=10, max_in_flight_requests_per_connection=1
    )
    try:
        futures = [
            producer.send(topic, key=key, value=value, timestamp_ms=timestamp_ms)
            for key, value, timestamp_ms in items
        ]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)  # raises if any record was not written
    finally:
        producer.close()
