"""The run loop: source -> idempotent Kafka producer, metrics, and recovery by re-sync.

Any failed delivery or fatal producer error throws the producer away, reads the raw topic's
tail again and tells the source to continue from there: what reached Kafka is kept, the rest is
fetched again, so nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from app.common.kafka_security import confluent_config
from app.common.schema import ProducerMetric, Trade, now_ms
from app.common.settings import Settings
from app.producer.kafka_io import TailError, build_producer, read_tail
from app.producer.metrics import ProducerMetrics
from app.producer.source import TradeSource
from app.producer.weight_budget import backoff_s

log = logging.getLogger(__name__)

METRICS_INTERVAL_S = 5.0
METRICS_KEY = ProducerMetric.SOURCE.encode()
SHUTDOWN_FLUSH_S = 15.0
REBUILD_SETTLE_S = 1.0


class ProducerService:
    def __init__(
        self,
        settings: Settings,
        source: TradeSource,
        metrics: ProducerMetrics,
        stop: threading.Event,
        *,
        metrics_interval_s: float = METRICS_INTERVAL_S,
        producer_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self._settings = settings
        self._source = source
        self._metrics = metrics
        self._stop = stop
        self._metrics_interval_s = metrics_interval_s
        self._producer_overrides = dict(producer_overrides or {})
        self._producer: Producer | None = None
        self._generation = 1
        self._broken = False
        self._next_metrics = 0.0

    def run(self) -> None:
        """Publish until the stop event is set, then flush what is queued."""
        try:
            self._connect()
            while not self._stop.is_set():
                if self._broken:
                    self._rebuild()
                    continue
                for trade in self._source.next_batch():
                    if self._broken or not self._produce(trade):
                        break
                self._serve(0)
                self._maybe_publish_metrics()
        finally:
            self._shutdown()

    def _connect(self) -> None:
        """Read the tail and start a fresh producer; retries until Kafka answers or stop."""
        failures = 0
        while not self._stop.is_set():
            try:
                tail = read_tail(
                    self._settings.kafka_bootstrap_servers,
                    self._settings.raw_topic,
                    self._settings.symbols,
                    security=confluent_config(self._settings),
                )
            except (TailError, KafkaException) as exc:
                failures += 1
                delay = backoff_s(failures, base_s=0.5, cap_s=15.0, jitter=random.random())
                log.error("event=tail_unavailable retry_in_s=%.1f error=%r", delay, str(exc))
                self._stop.wait(delay)
                continue
            self._producer = build_producer(
                self._settings.kafka_bootstrap_servers,
                self._error_handler(self._generation),
                confluent_config(self._settings) | self._producer_overrides,
            )
            self._broken = False
            self._source.resume(tail)
            log.info(
                "event=connected generation=%d tail=%s",
                self._generation,
                ",".join(f"{s}:{t.trade_id}" for s, t in sorted(tail.items())) or "empty",
            )
            return

    def _rebuild(self) -> None:
        self._metrics.add("producer_rebuilds")
        self._discard_producer()
        log.warning("event=producer_rebuild reason=delivery_failure")
        # A produce request already on the wire when the producer was purged may still be
        # appended; let it land before the tail is read, so it is not sent a second time.
        self._stop.wait(REBUILD_SETTLE_S)
        self._connect()

    def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        # Reports of the purged messages and late errors now belong to an old generation.
        self._generation += 1
        if producer is not None:
            producer.purge()
            producer.flush(5.0)

    def _error_handler(self, generation: int) -> Callable[[KafkaError], None]:
        def handle(error: KafkaError) -> None:
            if generation == self._generation:
                self._on_error(error)

        return handle

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            log.error("event=producer_fatal error=%r", str(error))
            self._broken = True
        elif error.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning("event=kafka_unreachable error=%r", str(error))
        else:
            # librdkafka's own log line (logger "librdkafka") already says the same.
            log.debug("event=producer_error error=%r", str(error))

    def _delivery(self, generation: int) -> Callable[[KafkaError | None, Message], None]:
        def report(error: KafkaError | None, message: Message) -> None:
            if generation != self._generation:
                return
            if error is not None:
                if not self._broken:  # the first failure says it all; the rest follow from it
                    log.error("event=delivery_failed topic=%s error=%r", message.topic(), str(error))
                self._broken = True
            else:
                self._metrics.add("trades_published")

        return report

    def _produce(self, trade: Trade) -> bool:
        """Queue one trade; False if it could not be queued (stopping or producer broken)."""
        assert self._producer is not None
        callback = self._delivery(self._generation)
        while not self._stop.is_set() and not self._broken:
            try:
                self._producer.produce(
                    self._settings.raw_topic,
                    key=trade.symbol.encode(),
                    value=trade.to_json(),
                    timestamp=trade.trade_time,
                    on_delivery=callback,
                )
                return True
            except BufferError:
                # The local queue is full (Kafka slow or away): wait for room, keep the order.
                self._serve(0.5)
                self._maybe_publish_metrics()
        return False

    def _serve(self, timeout_s: float) -> None:
        if self._producer is not None:
            self._producer.poll(timeout_s)

    def _maybe_publish_metrics(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._producer is None or (now < self._next_metrics and not force):
            return
        self._next_metrics = now + self._metrics_interval_s

        def report(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                log.warning("event=metrics_not_delivered error=%r", str(error))

        payload = self._metrics.to_json(now_ms())
        try:
            self._producer.produce(
                self._settings.metrics_topic, key=METRICS_KEY, value=payload, on_delivery=report
            )
        except BufferError:
            log.warning("event=metrics_skipped reason=queue_full")
        log.info("event=metrics json=%s", payload.decode())

    def _shutdown(self) -> None:
        if self._producer is None:
            return
        self._maybe_publish_metrics(force=True)
        remaining = self._producer.flush(SHUTDOWN_FLUSH_S)
        if remaining:
            # Not lost: the next start resumes after the last trade that reached the topic.
            log.warning("event=shutdown_unflushed messages=%d", remaining)
        log.info("event=stopped trades_published=%d", self._metrics.trades_published)
        self._producer = None
