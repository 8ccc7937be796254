"""The reconciler's I/O: final windows in from Kafka, klines from the exchange, records out.

It reads the aggregates topic in its own consumer group and commits, per partition, only up to
the oldest window not yet settled, after the records before it reached the reconciliation topic:
a restart checks again what it had not finished, and a record written twice is the same upsert.

Weight: Binance counts request weight per IP, so the producer and the reconciler share one count
whichever process spends it. Each keeps a `WeightBudget` of `weight_budget_per_minute` synchronised
with the exchange's `X-MBX-USED-WEIGHT-1M`, which includes the other's spend; the reconciler only
sends while that shared count leaves room for its request (weight 2).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import requests
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from app.common.kafka_security import confluent_config
from app.common.schema import ReconcileMetric, ReconcileStatus, WindowStats, now_ms
from app.common.settings import Settings
from app.producer.binance import http_session
from app.producer.weight_budget import WeightBudget, parse_retry_after, parse_used_weight
from app.reconcile.klines import KlineError, parse_answer
from app.reconcile.plan import KLINES_PATH, KLINES_WEIGHT, KlineRequest, Outcome, Plan

log = logging.getLogger(__name__)

METRICS_INTERVAL_S = 5.0
METRICS_KEY = ReconcileMetric.SOURCE.encode()
GROUP_ID = "telemetry-reconcile"
POLL_S = 0.25
# The job rewrites live rows every trigger: commit what is settled this often, not per record.
COMMIT_INTERVAL_S = 5.0
FLUSH_S = 10.0


@dataclass
class Counters:
    kline_requests: int = 0
    weight_spent: int = 0
    klines_missing: int = 0
    klines_malformed: int = 0
    http_errors: int = 0
    retries: int = 0
    matched: int = 0
    mismatched: int = 0
    unavailable: int = 0
    used_weight_1m: int = 0

    def count(self, outcome: Outcome) -> None:
        self.klines_missing += outcome.missing
        self.klines_malformed += outcome.malformed
        self.retries += outcome.retries
        for record in outcome.records:
            name = record.status.value
            setattr(self, name, getattr(self, name) + 1)


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        stop: threading.Event,
        *,
        session: requests.Session | None = None,
        jitter: Callable[[], float] = random.random,
        metrics_interval_s: float = METRICS_INTERVAL_S,
    ) -> None:
        self._settings = settings
        self._stop = stop
        self._session = session or http_session()
        self._plan = Plan(jitter)
        self._budget = WeightBudget(settings.weight_budget_per_minute)
        self._url = settings.binance_base_url.rstrip("/") + KLINES_PATH
        self.counters = Counters()
        self._metrics_interval_s = metrics_interval_s
        self._next_metrics = 0.0
        self._next_commit = 0.0
        self._consumed: dict[int, int] = {}  # partition -> next offset
        self._committed: dict[int, int] = {}
        self._failed_delivery = False

    def run(self) -> None:
        bootstrap = self._settings.kafka_bootstrap_servers
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": GROUP_ID,
                "client.id": GROUP_ID,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "logger": logging.getLogger("librdkafka"),
            }
            | confluent_config(self._settings)
        )
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": GROUP_ID,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "logger": logging.getLogger("librdkafka"),
            }
            | confluent_config(self._settings)
        )
        consumer.subscribe([self._settings.aggregates_topic])
        log.info(
            "event=starting topic=%s out=%s exchange=%s",
            self._settings.aggregates_topic,
            self._settings.reconciliation_topic,
            self._url,
        )
        try:
            while not self._stop.is_set():
                for message in consumer.consume(num_messages=1000, timeout=POLL_S):
                    self._take(message)
                outcome = self._step()
                if outcome is not None:
                    self._publish(producer, outcome)
                self._maybe_commit(consumer, producer)
                self._maybe_publish_metrics(producer)
        finally:
            self._maybe_publish_metrics(producer, force=True)
            if not self._failed_delivery:
                self._maybe_commit(consumer, producer, force=True)
            producer.flush(FLUSH_S)
            consumer.close()
            self._session.close()

    def _take(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("event=consume_error error=%r", str(error))
            return
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None  # a message without error has both
        self._consumed[partition] = offset + 1
        try:
            window = WindowStats.from_json(message.value() or b"")
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            log.warning(
                "event=unreadable_window partition=%d offset=%d error=%r", partition, offset, str(exc)
            )
            return
        if window.is_final:
            self._plan.add(window, (partition, offset), now_ms())

    def _step(self) -> Outcome | None:
        now = now_ms()
        request = self._plan.next_request(now)
        if request is None or self._budget.delay_ms(KLINES_WEIGHT, now) > 0:
            return None
        self._budget.spend(KLINES_WEIGHT, now)
        self.counters.kline_requests += 1
        self.counters.weight_spent += KLINES_WEIGHT
        outcome = self._fetch(request)
        self.counters.count(outcome)
        return outcome

    def _fetch(self, request: KlineRequest) -> Outcome:
        try:
            response = self._session.get(
                self._url, params=request.params, timeout=self._settings.http_timeout_s
            )
            body = response.content
        except requests.RequestException as exc:
            return self._failure(request, f"request failed: {exc}")
        now = now_ms()
        used = parse_used_weight(response.headers.get("X-MBX-USED-WEIGHT-1M"))
        if used is not None:
            self._budget.observe_used(used, now)
            self.counters.used_weight_1m = used
        if response.status_code in (418, 429):
            retry_after_s = parse_retry_after(response.headers.get("Retry-After"), 60.0)
            self._budget.block_until(now + int(retry_after_s * 1000))
        if response.status_code != 200:
            return self._failure(request, f"HTTP {response.status_code}: {body[:200]!r}")
        try:
            answer = parse_answer(body)
        except KlineError as exc:
            log.warning("event=klines_malformed symbol=%s error=%r", request.symbol, str(exc))
            return self._plan.on_failure(request, f"malformed answer: {exc}", now, malformed=True)
        return self._plan.on_answer(request, answer, now)

    def _failure(self, request: KlineRequest, reason: str) -> Outcome:
        self.counters.http_errors += 1
        log.warning("event=klines_failed symbol=%s reason=%r", request.symbol, reason)
        return self._plan.on_failure(request, reason, now_ms(), malformed=False)

    def _publish(self, producer: Producer, outcome: Outcome) -> None:
        def report(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                log.error("event=delivery_failed error=%r", str(error))
                self._failed_delivery = True

        for record in outcome.records:
            producer.produce(
                self._settings.reconciliation_topic,
                key=record.key.encode(),
                value=record.to_json(),
                on_delivery=report,
            )
            level = logging.INFO if record.status is ReconcileStatus.MATCHED else logging.WARNING
            log.log(level, "event=reconciled json=%s", record.to_json().decode())

    def _maybe_commit(self, consumer: Consumer, producer: Producer, force: bool = False) -> None:
        """Commit what is settled, once its records are on the reconciliation topic."""
        now = time.monotonic()
        if now < self._next_commit and not force:
            return
        self._next_commit = now + COMMIT_INTERVAL_S
        held = self._plan.held_offsets()
        wanted = {p: min(held.get(p, end), end) for p, end in self._consumed.items()}
        changed = {p: o for p, o in wanted.items() if self._committed.get(p) != o}
        if not changed:
            return
        if self._failed_delivery:
            # Settled windows whose record was lost: exit uncommitted, and the restart (systemd's,
            # or the operator's) reads those windows again and checks them again.
            raise RuntimeError("a reconciliation record was not delivered; stopping before the commit")
        if producer.flush(FLUSH_S):
            return  # still queued: committed at a later interval
        topic = self._settings.aggregates_topic
        try:
            consumer.commit(
                offsets=[TopicPartition(topic, p, o) for p, o in changed.items()], asynchronous=False
            )
        except KafkaException as exc:
            # Tried again at the next interval; until then a restart would only check again.
            log.warning("event=commit_failed error=%r", str(exc))
            return
        self._committed.update(changed)

    def _maybe_publish_metrics(self, producer: Producer, force: bool = False) -> None:
        now = time.monotonic()
        if now < self._next_metrics and not force:
            return
        self._next_metrics = now + self._metrics_interval_s
        metric = ReconcileMetric(
            time=now_ms(), budget_per_minute=self._settings.weight_budget_per_minute, **asdict(self.counters)
        )
        producer.produce(self._settings.metrics_topic, key=METRICS_KEY, value=metric.to_json())
        producer.poll(0)
        log.info("event=metrics json=%s pending=%d", metric.to_json().decode(), self._plan.pending())
