"""Kafka adapters of the producer: the raw topic's tail (where to resume) and the producer.

Resuming from the tail of the raw topic itself, rather than from a side file, means the topic
is the only state: whatever it holds was published, whatever it lacks will be sent again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from kafka.partitioner.default import murmur2

from app.common.schema import RecordError, Trade

log = logging.getLogger(__name__)

FIRST_CHUNK = 256
MAX_CHUNK = 65_536


class TailError(RuntimeError):
    """The raw topic's tail could not be read (broker unreachable, topic missing, timeout)."""


def build_producer(
    bootstrap: str, error_cb: Callable[[KafkaError], None], overrides: Mapping[str, Any] | None = None
) -> Producer:
    """The idempotent producer; `overrides` are extra librdkafka settings (tests, tuning)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": "telemetry-producer",
        # Idempotence: a retried produce request neither duplicates nor reorders a trade.
        "enable.idempotence": True,
        "acks": "all",
        # A trade that cannot be delivered without leaving a hole behind it becomes a fatal
        # error; the service then rebuilds the producer and resumes from the topic's tail.
        "enable.gapless.guarantee": True,
        # Never give up on a queued trade: a timed-out trade followed by a delivered newer one
        # would be a hole the tail cannot show. During an outage the queue fills, produce()
        # blocks, polling pauses, and the back-fill catches up once Kafka is back.
        "message.timeout.ms": 0,
        "linger.ms": 20,
        # The Java clients' partitioner, so a symbol lands where Spark and Kafka tools expect it.
        "partitioner": "murmur2_random",
        "error_cb": error_cb,
        "logger": logging.getLogger("librdkafka"),
    }
    return Producer(config | dict(overrides or {}))


def _consumer(bootstrap: str, security: Mapping[str, Any]) -> Consumer:
    return Consumer(
        dict(security)
        | {
            "bootstrap.servers": bootstrap,
            # Required by the client, unused: partitions are assigned and nothing is committed.
            "group.id": "telemetry-producer-tail",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # Each chunk is read once: do not let the broker hold a fetch open for more data.
            "fetch.wait.max.ms": 10,
            "logger": logging.getLogger("librdkafka"),
        }
    )


def _read_range(
    consumer: Consumer, topic: str, partition: int, start: int, end: int, deadline: float
) -> list[Trade]:
    """Parseable trades at offsets [start, end) of one partition; other records are skipped."""
    consumer.assign([TopicPartition(topic, partition, start)])
    trades: list[Trade] = []
    position = start
    while position < end:
        if time.monotonic() > deadline:
            raise TailError(f"timed out reading {topic}[{partition}] offsets {start}..{end}")
        # Ask for no more than is left, or consume() waits out its timeout for the rest.
        messages = consumer.consume(num_messages=min(1000, end - position), timeout=1.0)
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return trades
                raise TailError(f"reading {topic}[{partition}]: {error}")
            offset = message.offset()
            if offset is None or offset >= end:
                return trades
            position = offset + 1
            value = message.value()
            if value is None:
                continue
            try:
                trades.append(Trade.from_json(value))
            except RecordError as exc:
                log.warning(
                    "event=tail_skip topic=%s partition=%d offset=%d reason=%r",
                    topic,
                    partition,
                    offset,
                    str(exc),
                )
    return trades


def home_partition(symbol: str, partitions: int) -> int:
    """Where a keyed record goes with the Java clients' (and `murmur2_random`) partitioner."""
    return int(murmur2(symbol.encode()) & 0x7FFFFFFF) % partitions


class _TailScan:
    def __init__(self, consumer: Consumer, topic: str, deadline: float) -> None:
        self.consumer = consumer
        self.topic = topic
        self.deadline = deadline
        self.last: dict[str, Trade] = {}
        self.fully_read: set[int] = set()

    def scan(self, partition: int, targets: set[str]) -> None:
        """Read one partition backwards in growing chunks until every target symbol was seen."""
        if not targets or partition in self.fully_read:
            return
        try:
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=10.0
            )
        except Exception as exc:
            raise TailError(f"cannot read offsets of {self.topic}[{partition}]: {exc}") from exc
        seen: set[str] = set()
        end, chunk = high, FIRST_CHUNK
        while end > low and not targets <= seen:
            start = max(low, end - chunk)
            for trade in _read_range(self.consumer, self.topic, partition, start, end, self.deadline):
                seen.add(trade.symbol)
                best = self.last.get(trade.symbol)
                if best is None or trade.trade_id > best.trade_id:
                    self.last[trade.symbol] = trade
            end, chunk = start, min(chunk * 2, MAX_CHUNK)
        if end <= low:
            self.fully_read.add(partition)


def read_tail(
    bootstrap: str,
    topic: str,
    symbols: Iterable[str],
    timeout_s: float = 60.0,
    security: Mapping[str, Any] | None = None,
) -> dict[str, Trade]:
    """The trade with the highest id per symbol among the newest parseable records of the topic.

    Each symbol is looked for, newest first, in the partition its key hashes to. Only a symbol
    not found there (never published, or the partition count changed) costs a scan of the rest.
    A symbol absent from the result has never been published. `security` is the librdkafka form
    of the Kafka security settings (app.common.kafka_security.confluent_config).
    """
    wanted = set(symbols)
    consumer = _consumer(bootstrap, security or {})
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=min(10.0, timeout_s))
        except Exception as exc:
            raise TailError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
        topic_metadata = metadata.topics.get(topic)
        if topic_metadata is None or topic_metadata.error is not None or not topic_metadata.partitions:
            error = topic_metadata.error if topic_metadata is not None else "unknown topic"
            raise TailError(f"raw topic {topic!r} is not available: {error}")
        partitions = sorted(topic_metadata.partitions)
        tail = _TailScan(consumer, topic, time.monotonic() + timeout_s)
        for partition in partitions:
            tail.scan(partition, {s for s in wanted if home_partition(s, len(partitions)) == partition})
        missing = wanted - set(tail.last)
        if missing:
            log.info("event=tail_full_scan topic=%s symbols=%s", topic, ",".join(sorted(missing)))
            for partition in partitions:
                tail.scan(partition, missing - set(tail.last))
        return {symbol: trade for symbol, trade in tail.last.items() if symbol in wanted}
    finally:
        consumer.close()
