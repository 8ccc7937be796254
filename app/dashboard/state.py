"""The dashboard feed's rules as pure functions over records: no Kafka, no thread, no clock.

`WindowFeed` (feed.py) reads the topics and holds a lock; what it does with each record, and what it
reports about the pipeline and about Kafka, is decided here, so every rule is testable directly.

Upsert rule for the aggregates topic (key "<symbol>|<window_start>"): the latest row per key wins,
except that a final row is never replaced by a non-final one, so a late "live" row or a replay after a
Spark restart cannot reopen a closed window. Windows older than the history bound are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum

from app.common.schema import (
    ProducerMetric,
    ReconcileStatus,
    Reconciliation,
    SparkLedger,
    WindowStats,
)

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
# Spark re-runs at most the last uncommitted micro-batch after a restart, so remembering each query's
# latest batch ids is enough to count every batch once; older ones are only kept as per-minute sums.
RECENT_BATCH_IDS = 1000

# Windows per symbol, keyed by window start.
WindowTable = MutableMapping[str, dict[int, WindowStats]]


class FeedState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING_FOR_TOPIC = "waiting_for_topic"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """Where the feed stands with Kafka; `message` is meant for a human."""

    state: FeedState
    message: str
    last_contact_ms: int | None  # last time the broker answered, ms since epoch
    caught_up: bool  # read everything that was in the topics when the feed connected


@dataclass(frozen=True, slots=True)
class SparkHealth:
    """Spark's micro-batch reports within the history bound, each (query, batch_id) counted once."""

    batches: int
    last_batch_ms: int | None
    watermarks_ms: Mapping[str, int | None]  # latest watermark per query


@dataclass(frozen=True, slots=True)
class LateSummary:
    """Late trades since the job's checkpoint began (the late-trades topic holds each one)."""

    count: int
    quote_volume: Decimal  # Σ price x qty, exact


@dataclass(frozen=True, slots=True)
class Accounting:
    """The job's ledger of the raw records it read: those with a final place (a final window, the
    late-trades or dead-letter topic, the duplicates count) and those in windows still open."""

    accounted: int
    open_trades: int
    records: int

    @property
    def share(self) -> Decimal | None:
        """The records read that have their final place; the rest are in open windows."""
        if not self.records:
            return None
        return Decimal(self.accounted) / Decimal(self.records)


@dataclass(frozen=True, slots=True)
class PipelineHealth:
    spark: SparkHealth
    producer: ProducerMetric | None  # the newest report
    dead_letters: int | None  # None until the dead-letter topic has been measured once
    late: LateSummary
    accounting: Accounting
    bad_records: int  # records this feed could not parse (skipped, logged)


# ------------------------------------------------------------------------------------ windows


def history_cutoff_ms(now_ms: int, history_ms: int) -> int:
    """Windows starting before this are outside the history bound."""
    return now_ms - history_ms


def replaces(current: WindowStats | None, incoming: WindowStats) -> bool:
    """Whether `incoming` takes the place of `current` under the same key."""
    return current is None or incoming.is_final or not current.is_final


def upsert(table: WindowTable, stats: WindowStats, cutoff_ms: int) -> None:
    """Apply one aggregates row; ValueError if no real window can look like it."""
    if not (stats.low > 0 and stats.vwap > 0 and stats.trade_count > 0 and isinstance(stats.is_final, bool)):
        raise ValueError(f"implausible window {stats.key}: low {stats.low}, VWAP {stats.vwap}")
    if stats.window_start < cutoff_ms:
        return
    by_start = table.setdefault(stats.symbol, {})
    if replaces(by_start.get(stats.window_start), stats):
        by_start[stats.window_start] = stats


def prune(table: WindowTable, cutoff_ms: int) -> None:
    """Drop the windows that have aged out of the history bound."""
    for by_start in table.values():
        for start in [s for s in by_start if s < cutoff_ms]:
            del by_start[start]


# ------------------------------------------------------------------------------------- health


def newest_report(current: ProducerMetric | None, report: ProducerMetric) -> ProducerMetric:
    """The producer report to show: the newest by its own time, whatever order they arrive in."""
    if current is None or report.time >= current.time:
        return report
    return current


@dataclass
class SparkBatches:
    """Batch counts over distinct (query, batch_id) within the history bound, in bounded memory.

    A day of 1-second triggers is 86,400 batches per query; instead of one entry per batch, the feed
    keeps the last RECENT_BATCH_IDS ids per query (for de-duplication) and per-minute sums (to drop
    what falls out of the history bound).
    """

    recent: dict[str, dict[int, None]] = field(default_factory=dict)
    minutes: dict[int, int] = field(default_factory=dict)  # minute -> batches
    last_batch_ms: int | None = None
    watermarks: dict[str, tuple[int, int | None]] = field(default_factory=dict)

    def add(self, query: str, batch_id: int, time_ms: int, watermark: int | None) -> None:
        seen = self.recent.setdefault(query, {})
        if batch_id not in seen:
            seen[batch_id] = None
            if len(seen) > RECENT_BATCH_IDS:
                del seen[next(iter(seen))]
            minute = time_ms - time_ms % MINUTE_MS
            self.minutes[minute] = self.minutes.get(minute, 0) + 1
        if self.last_batch_ms is None or time_ms > self.last_batch_ms:
            self.last_batch_ms = time_ms
        previous = self.watermarks.get(query)
        if previous is None or time_ms >= previous[0]:
            self.watermarks[query] = (time_ms, watermark)

    def prune(self, cutoff_ms: int) -> None:
        for minute in [m for m in self.minutes if m + MINUTE_MS <= cutoff_ms]:
            del self.minutes[minute]

    def snapshot(self) -> SparkHealth:
        return SparkHealth(
            batches=sum(self.minutes.values()),
            last_batch_ms=self.last_batch_ms,
            watermarks_ms={query: wm for query, (_, wm) in sorted(self.watermarks.items())},
        )


def late_summary(ledgers: Iterable[SparkLedger]) -> LateSummary:
    """Late trades over every symbol's newest ledger: the job counts each one as it routes it to
    the late-trades topic, with its exact notional."""
    kept = list(ledgers)
    return LateSummary(
        count=sum(ledger.late for ledger in kept),
        quote_volume=sum((Decimal(ledger.late_quote_volume) for ledger in kept), Decimal(0)),
    )


def newest_ledger(ledgers: dict[str, SparkLedger], ledger: SparkLedger) -> None:
    """Keep each symbol's newest ledger: its counts only grow (a window's closing moves trades from
    open to final without a new record), so the newest is the furthest along."""
    current = ledgers.get(ledger.symbol)
    if current is None or (ledger.records, ledger.final_trades) >= (current.records, current.final_trades):
        ledgers[ledger.symbol] = ledger


def accounting(ledgers: Iterable[SparkLedger]) -> Accounting:
    kept = list(ledgers)
    return Accounting(
        accounted=sum(ledger.accounted for ledger in kept),
        open_trades=sum(ledger.open_trades for ledger in kept),
        records=sum(ledger.records for ledger in kept),
    )


# ------------------------------------------------------------------------------ reconciliation

# The latest reconciliation per window key ("<symbol>|<window_start>").
ReconciliationTable = MutableMapping[str, Reconciliation]


@dataclass(frozen=True, slots=True)
class ReconciliationSummary:
    """How the final windows within the history bound compared with the exchange's klines."""

    matched: int
    checked: int  # minutes with a kline to compare: matched + mismatched
    unavailable: int  # minutes whose kline could not be had: not checked, not matched
    mismatches: tuple[Reconciliation, ...]  # newest first: each one an alarm


def record_reconciliation(table: ReconciliationTable, record: Reconciliation, cutoff_ms: int) -> None:
    """The newest check of a window wins (a restart may check a window again)."""
    if record.window_start < cutoff_ms:
        return
    current = table.get(record.key)
    if current is None or record.checked_at >= current.checked_at:
        table[record.key] = record


def prune_reconciliations(table: ReconciliationTable, cutoff_ms: int) -> None:
    for key in [k for k, record in table.items() if record.window_start < cutoff_ms]:
        del table[key]


def summarize(records: Iterable[Reconciliation]) -> ReconciliationSummary:
    by_status: dict[ReconcileStatus, list[Reconciliation]] = {status: [] for status in ReconcileStatus}
    for record in records:
        by_status[record.status].append(record)
    mismatches = sorted(
        by_status[ReconcileStatus.MISMATCHED], key=lambda r: (r.window_start, r.symbol), reverse=True
    )
    matched = len(by_status[ReconcileStatus.MATCHED])
    return ReconciliationSummary(
        matched=matched,
        checked=matched + len(mismatches),
        unavailable=len(by_status[ReconcileStatus.UNAVAILABLE]),
        mismatches=tuple(mismatches),
    )


# ------------------------------------------------------------------------------ feed status

CONNECTING = FeedStatus(FeedState.CONNECTING, "connecting to Kafka", None, False)


def reached(status: FeedStatus, state: FeedState, message: str, now_ms: int) -> FeedStatus:
    """The broker answered and the feed is now in `state`."""
    return replace(status, state=state, message=message, last_contact_ms=now_ms)


def unreachable(status: FeedStatus, bootstrap_servers: str, reason: str) -> FeedStatus:
    """The broker did not answer: the last contact stays what it was."""
    return replace(
        status,
        state=FeedState.UNREACHABLE,
        message=f"Kafka at {bootstrap_servers} is unreachable: {reason}",
    )


def caught_up(status: FeedStatus) -> FeedStatus:
    return replace(status, caught_up=True)


def topics_state(missing: Iterable[str]) -> tuple[FeedState, str]:
    """Connected, or waiting while some topic the feed reads does not exist yet."""
    absent = list(missing)
    if absent:
        return FeedState.WAITING_FOR_TOPIC, "waiting for topic " + ", ".join(absent)
    return FeedState.CONNECTED, "connected"
