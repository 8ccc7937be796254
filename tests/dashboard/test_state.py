"""The dashboard feed's rules without Kafka: upserts, the history bound, health and feed status."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from app.common.schema import (
    FieldDifference,
    ProducerMetric,
    ReconcileStatus,
    Reconciliation,
    SparkLedger,
    WindowStats,
)
from app.core.windows import WINDOW_MS
from app.dashboard import state
from app.dashboard.state import RECENT_BATCH_IDS, FeedState, SparkBatches, WindowTable
from tests.dashboard.helpers import final, window

T0 = 1_767_225_600_000  # a minute boundary


def rows(table: WindowTable, symbol: str = "BTCUSDT") -> list[WindowStats]:
    return [table[symbol][start] for start in sorted(table.get(symbol, {}))]


def apply(*windows: WindowStats, cutoff_ms: int = 0) -> WindowTable:
    table: WindowTable = {}
    for stats in windows:
        state.upsert(table, stats, cutoff_ms)
    return table


# ------------------------------------------------------------------------------------ upserts


def test_the_latest_row_per_key_wins_and_keys_are_symbol_and_start() -> None:
    early = window(T0, ["100.00", "101.00"])
    grown = window(T0, ["100.00", "101.00", "99.50"])
    later = window(T0 + WINDOW_MS, ["102.00"], first_id=10)
    other = window(T0, ["3000.00"], symbol="ETHUSDT")
    table = apply(later, early, other, grown)
    assert rows(table) == [grown, later]
    assert rows(table, "ETHUSDT") == [other]


def test_a_final_row_is_never_replaced_by_a_live_one() -> None:
    live = window(T0, ["100.00", "101.00"])
    closed = final(window(T0, ["100.00", "101.00", "102.00"]))
    stale_live = window(T0, ["100.00"])  # e.g. the live query replaying after a Spark restart
    assert rows(apply(live, closed, stale_live, closed, closed)) == [closed]
    assert not state.replaces(closed, stale_live)


def test_a_later_final_row_replaces_a_final_one() -> None:
    closed = final(window(T0, ["100.00", "101.00", "102.00"]))
    corrected = final(window(T0, ["100.00", "101.00", "102.00", "103.00"]))
    assert rows(apply(closed, corrected, window(T0, ["100.00"]))) == [corrected]


def test_rows_older_than_the_history_bound_are_not_taken() -> None:
    old = window(T0 - 2 * WINDOW_MS, ["90.00"])
    recent = window(T0, ["100.00"])
    assert rows(apply(old, recent, cutoff_ms=T0 - WINDOW_MS)) == [recent]


def test_pruning_drops_only_windows_before_the_cutoff() -> None:
    first = window(T0 - 10 * WINDOW_MS, ["100.00"])
    second = window(T0 - 2 * WINDOW_MS, ["101.00"])
    table = apply(first, second, window(T0 - 10 * WINDOW_MS, ["5.00"], symbol="ETHUSDT"))
    state.prune(table, state.history_cutoff_ms(T0 + 6 * WINDOW_MS, 15 * WINDOW_MS))
    assert rows(table) == [second]
    assert rows(table, "ETHUSDT") == []
    state.prune(table, second.window_start)
    assert rows(table) == [second], "a window starting at the cutoff stays"


@pytest.mark.parametrize(
    "broken",
    [
        {"vwap": Decimal(0)},
        {"low": Decimal(0)},
        {"trade_count": 0},
    ],
)
def test_an_implausible_window_is_refused(broken: dict[str, object]) -> None:
    table: WindowTable = {}
    with pytest.raises(ValueError, match="implausible"):
        state.upsert(table, replace(window(T0, ["1.00"]), **broken), 0)  # type: ignore[arg-type]
    assert table == {}


# ------------------------------------------------------------------------------------- health


def producer(time_ms: int, published: int) -> ProducerMetric:
    return ProducerMetric(
        time=time_ms,
        trades_published=published,
        polls=10,
        http_errors={"5xx": 2, "timeout": 1},
        rate_limited_429=1,
        banned_418=1,
        used_weight_1m=20,
        budget_per_minute=3000,
    )


def test_the_newest_producer_report_wins_whatever_the_arrival_order() -> None:
    shown = None
    for report in (producer(T0 - 3000, 50), producer(T0 - 1000, 80), producer(T0 - 2000, 70)):
        shown = state.newest_report(shown, report)
    assert shown == producer(T0 - 1000, 80)
    assert shown.errors == 2 + 1 + 1 + 1


def test_spark_batches_are_counted_once_with_the_latest_watermark_per_query() -> None:
    batches = SparkBatches()
    batches.add("live", 1, T0 + 1000, watermark=T0 - 15000)
    batches.add("final", 1, T0 + 1000, watermark=None)
    batches.add("live", 2, T0 + 2000, watermark=T0 - 14000)
    batches.add("live", 2, T0 + 2000, watermark=T0 - 14000)  # replayed batch
    batches.add("live", 0, T0 + 500, watermark=T0 - 16000)  # delivered late
    health = batches.snapshot()
    assert health.batches == 4
    assert health.last_batch_ms == T0 + 2000
    assert health.watermarks_ms == {"final": None, "live": T0 - 14000}


def test_spark_batches_are_deduplicated_and_aged_out_in_bounded_memory() -> None:
    batches = SparkBatches()
    for batch_id in range(5000):  # one report a second for 83 minutes
        batches.add("live", batch_id, T0 + batch_id * 1000, watermark=None)
    batches.add("live", 4999, T0 + 4_999_000, watermark=None)  # replayed after a restart

    assert batches.snapshot().batches == 5000
    assert len(batches.recent["live"]) == RECENT_BATCH_IDS
    assert len(batches.minutes) == 84

    batches.prune(T0 + 60 * 60_000)  # keep reports from the minute starting at 60 min onwards
    kept = range(3600, 5000)
    assert batches.snapshot().batches == len(kept)
    assert batches.snapshot().last_batch_ms == T0 + 4_999_000


def test_late_trades_are_summed_over_the_newest_ledgers_exactly() -> None:
    ledgers = [
        SparkLedger("BTCUSDT", late=2, late_quote_volume="60.30000000000000"),
        SparkLedger("ETHUSDT", late=1, late_quote_volume="0.0000000000000001"),
    ]
    assert state.late_summary(ledgers) == state.LateSummary(3, Decimal("60.3000000000000001"))


def test_accounting_keeps_each_symbols_newest_ledger() -> None:
    ledgers: dict[str, SparkLedger] = {}
    for ledger in (
        SparkLedger("BTCUSDT", records=5, final_trades=2, open_trades=3),
        SparkLedger("BTCUSDT", records=7, final_trades=2, open_trades=5),
        SparkLedger("BTCUSDT", records=7, final_trades=6, open_trades=0, duplicates=1),  # a window closed
        SparkLedger("BTCUSDT", records=6, final_trades=2, open_trades=4),  # delivered late
        SparkLedger("", records=3, dead_letters=3),
    ):
        state.newest_ledger(ledgers, ledger)
    books = state.accounting(ledgers.values())
    assert (books.accounted, books.open_trades, books.records) == (6 + 1 + 3, 0, 7 + 3)
    assert books.share == 1
    assert state.accounting([SparkLedger("X", records=4, final_trades=1, open_trades=3)]).share == Decimal(
        "0.25"
    )
    assert state.accounting([]).share is None


# -------------------------------------------------------------------------------- feed status


def test_status_moves_from_connecting_through_outage_and_back() -> None:
    status = state.CONNECTING
    assert (status.state, status.last_contact_ms, status.caught_up) == (FeedState.CONNECTING, None, False)

    status = state.unreachable(status, "127.0.0.1:9", "refused")
    assert status.state is FeedState.UNREACHABLE
    assert status.message == "Kafka at 127.0.0.1:9 is unreachable: refused"
    assert status.last_contact_ms is None, "never in contact yet"

    status = state.reached(status, *state.topics_state(["agg"]), T0)
    assert (status.state, status.message, status.last_contact_ms) == (
        FeedState.WAITING_FOR_TOPIC,
        "waiting for topic agg",
        T0,
    )

    status = state.caught_up(state.reached(status, *state.topics_state([]), T0 + 1000))
    assert (status.state, status.message, status.caught_up) == (FeedState.CONNECTED, "connected", True)

    status = state.unreachable(status, "127.0.0.1:9", "timed out")
    assert status.state is FeedState.UNREACHABLE
    assert status.last_contact_ms == T0 + 1000, "an outage keeps the last contact"
    assert status.caught_up, "having caught up once stays true through an outage"


def test_waiting_names_every_missing_topic() -> None:
    assert state.topics_state(["agg", "metrics"]) == (
        FeedState.WAITING_FOR_TOPIC,
        "waiting for topic agg, metrics",
    )


# ------------------------------------------------------------------------------ reconciliation


def _check(
    start: int, status: ReconcileStatus, checked_at: int = 1, symbol: str = "BTCUSDT"
) -> Reconciliation:
    differences = (
        (FieldDifference("trade_count", Decimal(20), Decimal(21)),)
        if status is ReconcileStatus.MISMATCHED
        else ()
    )
    return Reconciliation(symbol, start, status, differences, checked_at=checked_at)


def test_reconciliation_counts_matched_of_checked_and_lists_mismatches_newest_first() -> None:
    table: state.ReconciliationTable = {}
    records = [
        _check(T0, ReconcileStatus.MATCHED),
        _check(T0 + WINDOW_MS, ReconcileStatus.MISMATCHED),
        _check(T0 + 2 * WINDOW_MS, ReconcileStatus.MATCHED),
        _check(T0 + 3 * WINDOW_MS, ReconcileStatus.MISMATCHED, symbol="ETHUSDT"),
        _check(T0 + 4 * WINDOW_MS, ReconcileStatus.UNAVAILABLE),
    ]
    for record in records:
        state.record_reconciliation(table, record, cutoff_ms=0)
    summary = state.summarize(table.values())
    assert (summary.matched, summary.checked, summary.unavailable) == (2, 4, 1)
    assert summary.mismatches == (records[3], records[1])


def test_the_newest_check_of_a_minute_wins_and_old_minutes_age_out() -> None:
    table: state.ReconciliationTable = {}
    mismatch = _check(T0, ReconcileStatus.MISMATCHED, checked_at=5)
    rechecked = _check(T0, ReconcileStatus.MATCHED, checked_at=9)
    for record in (mismatch, rechecked, mismatch):  # a replay of the older record arrives last
        state.record_reconciliation(table, record, cutoff_ms=0)
    assert list(table.values()) == [rechecked]
    state.record_reconciliation(table, _check(T0 - WINDOW_MS, ReconcileStatus.MISMATCHED), cutoff_ms=T0)
    assert list(table) == [rechecked.key], "older than the history bound: not taken"
    state.prune_reconciliations(table, cutoff_ms=T0 + WINDOW_MS)
    assert table == {}
    assert state.summarize([]) == state.ReconciliationSummary(0, 0, 0, ())
