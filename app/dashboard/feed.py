"""The dashboard's Kafka data layer: window upserts, pipeline metrics (the job's ledger of where
records went among them), the dead-letter count and the reconciliation of final windows against the
exchange's klines.

`WindowFeed` reads the aggregates and metrics topics with one kafka-python-ng consumer (no consumer
group: every dashboard process keeps its own in-memory view) and answers questions about them:

    feed = WindowFeed.from_settings(Settings.from_env())
    feed.poll()                      # one bounded step; or feed.start() for a background thread
    feed.wait_for(lambda f: bool(f.windows("BTCUSDT")), timeout_s=30)
    feed.windows("BTCUSDT")          # [WindowStats, ...] oldest first, within the history bound
    feed.health()                    # late trades, dead letters, records accounted, producer counters
    feed.status()                    # connected / unreachable / waiting for a topic, and why
    feed.reconciliation()            # N of M minutes matched, and the mismatches

The reconciliation topic is read once it exists; a pipeline without reconciliation is not waited for.

What happens to each record (the upsert rule, the history bound) and what the feed reports about
the pipeline and about Kafka are pure functions in state.py; this class only does the I/O around them.

Every method is thread-safe. Kafka I/O is serialised by one lock and the in-memory state by another,
so readers (Streamlit sessions) never wait for Kafka; `start()` moves the I/O to a daemon thread, which
is what the app uses because kafka-python can block while a broker disappears mid-request.

Each metadata and offset request has a deadline (bounded.py). The feed is connected while some
broker answers metadata: with one node of a cluster down, the partitions it led are read again once
their new leaders are known, and a dead-letter count that cannot be measured in time keeps its last
value until it can.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import InvalidOperation
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, NoBrokersAvailable

from app.common.kafka_security import kafka_python_config, refusal_hint
from app.common.schema import (
    Metric,
    ProducerMetric,
    Reconciliation,
    SparkLedger,
    SparkMetric,
    WindowStats,
    metric_from_json,
    now_ms,
)
from app.common.settings import Settings
from app.dashboard import bounded, state
from app.dashboard.state import (
    HOUR_MS,
    FeedState,
    FeedStatus,
    PipelineHealth,
    ReconciliationSummary,
    ReconciliationTable,
    SparkBatches,
    SparkHealth,
)

__all__ = ["FeedState", "FeedStatus", "PipelineHealth", "SparkHealth", "WindowFeed"]

log = logging.getLogger(__name__)


class WindowFeed:
    """An upserting, history-bounded, thread-safe view of the pipeline's output topics."""

    def __init__(
        self,
        bootstrap_servers: str,
        aggregates_topic: str,
        metrics_topic: str,
        dead_letter_topic: str,
        *,
        reconciliation_topic: str | None = None,
        history_hours: float = 24.0,
        timeout_s: float = 3.0,
        offsets_every_s: float = 2.0,
        clock_ms: Callable[[], int] = now_ms,
        security: Mapping[str, Any] | None = None,
        refusal_hint: str = "",
    ) -> None:
        """`timeout_s` bounds each Kafka request and connection attempt; `offsets_every_s` is how often
        the dead-letter count and the broker's liveness are re-checked; `security` is the kafka-python
        form of the Kafka security settings (app.common.kafka_security.kafka_python_config), and
        `refusal_hint` what to check when the broker turns the feed away (refusal_hint)."""
        self.bootstrap_servers = bootstrap_servers
        self._security = dict(security or {})
        self._refusal_hint = refusal_hint
        self.aggregates_topic = aggregates_topic
        self.metrics_topic = metrics_topic
        self.dead_letter_topic = dead_letter_topic
        self.reconciliation_topic = reconciliation_topic
        self.history_ms = int(history_hours * HOUR_MS)
        self._timeout_ms = max(int(timeout_s * 1000), 1000)
        self._timeout_s = self._timeout_ms / 1000
        self._offsets_every_ms = int(offsets_every_s * 1000)
        self._clock_ms = clock_ms

        self._io_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        # Guarded by _io_lock.
        self._consumer: KafkaConsumer | None = None
        self._assigned: set[str] = set()
        self._targets: dict[TopicPartition, int] = {}
        self._next_offsets_ms = 0
        self._next_connect_ms = 0

        # Guarded by _state_lock.
        self._windows: dict[str, dict[int, WindowStats]] = {}
        self._reconciliations: ReconciliationTable = {}
        self._spark = SparkBatches()
        self._producer: ProducerMetric | None = None
        self._dead_letters: int | None = None
        self._ledgers: dict[str, SparkLedger] = {}
        self._bad_records = 0
        self._status = state.CONNECTING

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> WindowFeed:
        return cls(
            settings.kafka_bootstrap_servers,
            settings.aggregates_topic,
            settings.metrics_topic,
            settings.dead_letter_topic,
            reconciliation_topic=settings.reconciliation_topic,
            history_hours=settings.dashboard_history_hours,
            security=kafka_python_config(settings),
            refusal_hint=refusal_hint(settings),
            **kwargs,
        )

    # ----------------------------------------------------------------------------------- readers

    def symbols(self) -> list[str]:
        with self._state_lock:
            return sorted(symbol for symbol, windows in self._windows.items() if windows)

    def windows(self, symbol: str) -> list[WindowStats]:
        """The symbol's windows within the history bound, oldest first."""
        with self._state_lock:
            by_start = self._windows.get(symbol, {})
            return [by_start[start] for start in sorted(by_start)]

    def latest(self, symbol: str) -> WindowStats | None:
        with self._state_lock:
            by_start = self._windows.get(symbol)
            return by_start[max(by_start)] if by_start else None

    def health(self) -> PipelineHealth:
        with self._state_lock:
            return PipelineHealth(
                spark=self._spark.snapshot(),
                producer=self._producer,
                dead_letters=self._dead_letters,
                late=state.late_summary(self._ledgers.values()),
                accounting=state.accounting(self._ledgers.values()),
                bad_records=self._bad_records,
            )

    def reconciliation(self) -> ReconciliationSummary:
        with self._state_lock:
            return state.summarize(self._reconciliations.values())

    def status(self) -> FeedStatus:
        with self._state_lock:
            return self._status

    def wait_until_ready(self, timeout_s: float) -> bool:
        """Block until the first connection attempt has either read the topics to their end or failed."""
        return self._ready.wait(timeout_s)

    # ------------------------------------------------------------------------------------ driving

    def wait_for(self, condition: Callable[[WindowFeed], bool], timeout_s: float) -> bool:
        """Poll until `condition(feed)` holds; False if it still does not after `timeout_s`.

        With `start()` the feed's thread does the polling and this only watches, e.g.
        `feed.wait_for(lambda f: any(w.is_final for w in f.windows("BTCUSDT")), 60)`.
        """
        deadline = time.monotonic() + timeout_s
        while not condition(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._thread is None:
                self.poll(max_wait_s=min(remaining, 0.5))
            else:
                time.sleep(min(remaining, 0.05))
        return True

    def start(self, interval_s: float = 0.25) -> None:
        """Poll in a daemon thread until `close()`. Idempotent."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self.poll(max_wait_s=interval_s)
                except Exception:  # the thread must outlive any single bad poll
                    log.exception("dashboard feed poll failed")
                # poll() returns at once while Kafka is away; do not spin.
                self._stop.wait(max(interval_s - (time.monotonic() - started), 0))

        self._thread = threading.Thread(target=loop, name="window-feed", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        consumer = self._consumer
        if consumer is not None:
            # Closing from this thread also ends a poll the feed thread may be blocked in.
            consumer.close(autocommit=False)
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("dashboard feed thread did not stop within %.1f s", timeout_s)
            self._thread = None
        if self._io_lock.acquire(timeout=timeout_s):
            self._consumer = None
            self._io_lock.release()

    def poll(self, max_wait_s: float = 0.5) -> int:
        """Apply what Kafka has for us, waiting at most about `max_wait_s` for new records.

        Connects (or reconnects) first when needed. Returns the number of records applied.
        """
        with self._io_lock:
            if self._stop.is_set():
                return 0
            now = self._clock_ms()
            if self._consumer is None and not self._connect(now):
                return 0
            if self.status().state is FeedState.UNREACHABLE:
                # Only the cheap liveness check runs until the broker is back, then fetching resumes.
                if now >= self._next_offsets_ms:
                    self._check_offsets()
                if self.status().state is FeedState.UNREACHABLE:
                    return 0
            applied = self._fetch(max_wait_s)
            if self._clock_ms() >= self._next_offsets_ms:
                self._check_offsets()
            return applied

    # ---------------------------------------------------------------------------------- internals

    def _reached(self, feed_state: FeedState, message: str) -> None:
        with self._state_lock:
            self._status = state.reached(self._status, feed_state, message, self._clock_ms())

    def _mark_caught_up(self) -> None:
        with self._state_lock:
            self._status = state.caught_up(self._status)
        self._ready.set()

    def _unreachable(self, reason: str) -> None:
        log.warning("kafka at %s unreachable: %s", self.bootstrap_servers, reason)
        with self._state_lock:
            self._status = state.unreachable(self._status, self.bootstrap_servers, reason)
        self._ready.set()

    def _tcp_reachable(self) -> str | None:
        """None if some bootstrap address accepts a TCP connection, else why not.

        kafka-python waits without a deadline for metadata while no broker is connected, so the feed
        checks the socket first rather than letting a request start against a dead broker.
        """
        errors = []
        for address in self.bootstrap_servers.split(","):
            host, _, port = address.strip().rpartition(":")
            try:
                with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1.0):
                    return None
            except (OSError, ValueError) as exc:
                errors.append(f"{address.strip()}: {exc}")
        return "; ".join(errors)

    def _connect(self, now: int) -> bool:
        if now < self._next_connect_ms:
            return False
        self._next_connect_ms = now + self._offsets_every_ms
        reason = self._tcp_reachable()
        if reason is not None:
            self._unreachable(reason)
            return False
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                client_id="telemetry-dashboard",
                group_id=None,
                enable_auto_commit=False,
                api_version_auto_timeout_ms=self._timeout_ms,
                request_timeout_ms=self._timeout_ms,
                fetch_max_wait_ms=200,
                connections_max_idle_ms=max(540_000, self._timeout_ms + 1),
                reconnect_backoff_max_ms=2000,
                max_poll_records=5000,
                **self._security,
            )
        except NoBrokersAvailable:
            # The socket answered (checked above), so the broker refused us or is not Kafka.
            self._unreachable(f"no broker answered{self._refusal_hint}")
            return False
        except (KafkaError, OSError) as exc:
            self._unreachable(str(exc) or type(exc).__name__)
            return False
        self._assigned = set()
        log.info("dashboard feed connected to %s", self.bootstrap_servers)
        self._check_offsets()  # assigns the topics that exist
        return True

    def _assign(self, deadline: float) -> None:
        """Assign the partitions of the topics that exist and seek them to now - history.

        Uses the metadata as last refreshed. If some new partition's offsets cannot be read by the
        `deadline` (its leader is away), its topic waits for the next check."""
        consumer = self._consumer
        assert consumer is not None
        missing = []
        new: list[TopicPartition] = []
        for topic in self._read_topics:
            if topic in self._assigned:
                continue
            partitions = bounded.partitions(consumer, topic)
            if partitions is None:
                if topic in self._required_topics:
                    missing.append(topic)
                continue
            new.extend(partitions)
        since = state.history_cutoff_ms(self._clock_ms(), self.history_ms)
        found = bounded.offsets(consumer, dict.fromkeys(new, since), deadline)
        ends = bounded.offsets(consumer, dict.fromkeys(new, bounded.LATEST), deadline)
        if found is None or ends is None:
            log.info("dashboard feed: offsets of %s not read in time, trying again", sorted(new))
        elif new:
            consumer.assign(sorted(set(consumer.assignment()) | set(new)))
            for tp in new:
                end = ends[tp]
                assert end is not None  # a partition always has an end offset
                # No record at or after the cut-off: only what arrives from now on is in the window.
                consumer.seek(tp, found[tp] if found[tp] is not None else end)
                self._targets[tp] = end
            self._assigned |= {tp.topic for tp in new}
            log.info(
                "dashboard feed reading %s from %d ms ago", sorted({tp.topic for tp in new}), self.history_ms
            )
        self._reached(*state.topics_state(missing))
        if self.aggregates_topic in missing:
            # Nothing to catch up with yet: the app may render its "no data" state.
            self._ready.set()

    @property
    def _required_topics(self) -> tuple[str, ...]:
        return (self.aggregates_topic, self.metrics_topic)

    @property
    def _read_topics(self) -> tuple[str, ...]:
        """The required topics, then those read once they exist and never waited for."""
        optional = (self.reconciliation_topic,)
        return self._required_topics + tuple(topic for topic in optional if topic)

    def _fetch(self, max_wait_s: float) -> int:
        consumer = self._consumer
        assert consumer is not None
        if not consumer.assignment():
            return 0
        applied = 0
        deadline = time.monotonic() + max_wait_s
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            batches = consumer.poll(timeout_ms=max(remaining_ms, 0))
            if batches:
                applied += self._apply(rec for records in batches.values() for rec in records)
            if not batches or remaining_ms <= 0:
                break
        if not self.status().caught_up and all(
            consumer.position(tp) >= end for tp, end in self._targets.items()
        ):
            self._mark_caught_up()
        return applied

    def _check_offsets(self) -> None:
        """Prove a broker answers, pick up late-created topics, and measure the dead-letter topic,
        all within one request timeout."""
        consumer = self._consumer
        assert consumer is not None
        self._next_offsets_ms = self._clock_ms() + self._offsets_every_ms
        deadline = time.monotonic() + self._timeout_s
        reason = self._tcp_reachable()
        if reason is not None:
            self._unreachable(reason)
            return
        if not bounded.refresh_metadata(consumer, deadline):
            self._unreachable(f"no broker answered a metadata request in {self._timeout_s:g} s")
            return
        try:
            if len(self._assigned) < len(self._read_topics):
                self._assign(deadline)
            self._measure_dead_letters(deadline)
        except KafkaError as exc:
            self._unreachable(str(exc) or type(exc).__name__)
            return
        with self._state_lock:
            cutoff = state.history_cutoff_ms(self._clock_ms(), self.history_ms)
            self._spark.prune(cutoff)
            state.prune(self._windows, cutoff)
            state.prune_reconciliations(self._reconciliations, cutoff)
        if set(self._required_topics) <= self._assigned:
            self._reached(FeedState.CONNECTED, "connected")

    def _measure_dead_letters(self, deadline: float) -> None:
        """Count the records in the dead-letter topic (None: no such topic). If a partition's leader
        does not answer by the `deadline`, the last count stands until the next check."""
        consumer = self._consumer
        assert consumer is not None
        tps = bounded.partitions(consumer, self.dead_letter_topic)
        count = None
        if tps is not None:
            begin = bounded.offsets(consumer, dict.fromkeys(tps, bounded.EARLIEST), deadline)
            end = bounded.offsets(consumer, dict.fromkeys(tps, bounded.LATEST), deadline)
            if begin is None or end is None:
                log.info("dashboard feed: dead letters not counted in time, keeping the last count")
                return
            count = sum((end[tp] or 0) - (begin[tp] or 0) for tp in tps)
        with self._state_lock:
            self._dead_letters = count

    def _apply(self, records: Iterable[Any]) -> int:
        cutoff = state.history_cutoff_ms(self._clock_ms(), self.history_ms)
        count = 0
        with self._state_lock:
            for record in records:
                count += 1
                try:
                    if record.topic == self.aggregates_topic:
                        state.upsert(self._windows, WindowStats.from_json(record.value), cutoff)
                    elif record.topic == self.reconciliation_topic:
                        state.record_reconciliation(
                            self._reconciliations, Reconciliation.from_json(record.value), cutoff
                        )
                    else:
                        self._metric(metric_from_json(record.key, record.value))
                except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
                    self._bad_records += 1
                    log.warning(
                        "skipping unreadable record %s[%d]@%d: %s",
                        record.topic,
                        record.partition,
                        record.offset,
                        exc,
                    )
        return count

    def _metric(self, metric: Metric | None) -> None:
        if isinstance(metric, SparkMetric):
            self._spark.add(
                query=metric.query,
                batch_id=metric.batch_id,
                time_ms=metric.time,
                watermark=metric.watermark,
            )
        elif isinstance(metric, SparkLedger):
            state.newest_ledger(self._ledgers, metric)
        elif isinstance(metric, ProducerMetric):
            self._producer = state.newest_report(self._producer, metric)
        else:
            log.debug("ignoring a metric from a source this version does not know")
