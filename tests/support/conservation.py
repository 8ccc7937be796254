"""The conservation rule, measured on a run's topics: every raw record is in exactly one place.

The places: a final window (its trade_count), a window still open (the job's ledger), the
late-trades topic, the dead-letter topic, or the job's duplicates count. Topics are counted by
distinct raw (partition, offset): after a crash the job's Kafka sink may write a batch twice, and
a final window by distinct key for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.common.schema import DeadLetter, LateTrade, SparkLedger, WindowStats, metric_from_json
from app.common.settings import Settings
from tests.support.kafka import read_all


@dataclass(frozen=True)
class Conservation:
    raw: int
    final_trades: int
    open_trades: int
    late: int
    dead_letters: int
    duplicates: int
    job_records: int  # what the job says it read (SparkLedger.records summed over symbols)

    @property
    def accounted(self) -> int:
        return self.final_trades + self.open_trades + self.late + self.dead_letters + self.duplicates

    @property
    def holds(self) -> bool:
        return self.raw == self.accounted == self.job_records


def newest_ledgers(ledgers: Iterable[SparkLedger]) -> dict[str, SparkLedger]:
    """Each symbol's furthest-along ledger (its counts only grow)."""
    newest: dict[str, SparkLedger] = {}
    for ledger in ledgers:
        current = newest.get(ledger.symbol)
        if current is None or (ledger.records, ledger.final_trades) >= (
            current.records,
            current.final_trades,
        ):
            newest[ledger.symbol] = ledger
    return newest


def distinct_offsets(records: Iterable[DeadLetter | LateTrade]) -> int:
    return len({(record.partition, record.offset) for record in records})


def measure(settings: Settings, timeout_s: float = 60) -> Conservation:
    bootstrap = settings.kafka_bootstrap_servers

    def topic(name: str) -> list[bytes]:
        return [r.value for r in read_all(bootstrap, name, timeout_s=timeout_s)]

    finals = {w.key: w for w in map(WindowStats.from_json, topic(settings.aggregates_topic)) if w.is_final}
    metrics = [
        metric_from_json(r.key, r.value) for r in read_all(bootstrap, settings.metrics_topic, timeout_s)
    ]
    ledgers = newest_ledgers(m for m in metrics if isinstance(m, SparkLedger)).values()
    return Conservation(
        raw=len(topic(settings.raw_topic)),
        final_trades=sum(w.trade_count for w in finals.values()),
        open_trades=sum(ledger.open_trades for ledger in ledgers),
        late=distinct_offsets(map(LateTrade.from_json, topic(settings.late_trades_topic))),
        dead_letters=distinct_offsets(map(DeadLetter.from_json, topic(settings.dead_letter_topic))),
        duplicates=sum(ledger.duplicates for ledger in ledgers),
        job_records=sum(ledger.records for ledger in ledgers),
    )
