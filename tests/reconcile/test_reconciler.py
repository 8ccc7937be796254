"""The reconciler against the real broker and the fake exchange over real HTTP (no Spark here: the
final windows are the reference aggregation of the recorded trades, written as the job writes them;
tests/e2e/test_recorded_trades.py runs the real job).

A wrong kline is reported as a mismatch naming the field and the exact difference, and the
dashboard's state lists it; a missing or malformed kline is asked for again, counted, and never
reported as a match.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal

import pytest

from app.common.schema import (
    FieldDifference,
    ReconcileMetric,
    ReconcileStatus,
    Reconciliation,
    WindowStats,
    metric_from_json,
)
from app.common.settings import Settings
from app.core.windows import aggregate_all
from app.dashboard import state, view
from app.producer.trades import trade_from_binance
from app.reconcile.plan import KLINES_PATH, MAX_ATTEMPTS
from app.reconcile.service import Reconciler
from tests.support.fake_exchange import FakeExchange
from tests.support.kafka import create_topics, read_all, unique_topic, write_raw
from tests.support.recorded import SYMBOL, complete_minute_klines, recorded_trades

WAIT_S = 60.0


def final_windows() -> list[WindowStats]:
    """The final windows of the recorded trades' 14 complete minutes, oldest first."""
    trades = [trade_from_binance(t, SYMBOL, 0) for t in recorded_trades()]
    complete = {k.open_time for k in complete_minute_klines()}
    windows = [
        replace(w, is_final=True) for w in aggregate_all(trades).values() if w.window_start in complete
    ]
    return sorted(windows, key=lambda w: w.window_start)


@dataclass
class Run:
    settings: Settings
    exchange: FakeExchange
    reconciler: Reconciler
    stop: threading.Event
    thread: threading.Thread | None = None

    def start(self, windows: list[WindowStats]) -> None:
        """Write the windows as the job does (a live row first: only final rows are checked), then run."""
        rows = [replace(windows[0], is_final=False), *windows]
        items = ((w.key.encode(), w.to_json(), None) for w in rows)
        write_raw(self.settings.kafka_bootstrap_servers, self.settings.aggregates_topic, items)
        self.thread = threading.Thread(target=self.reconciler.run, name="reconciler", daemon=True)
        self.thread.start()

    def records(self) -> dict[str, Reconciliation]:
        rows = read_all(self.settings.kafka_bootstrap_servers, self.settings.reconciliation_topic)
        return {r.key: r for r in (Reconciliation.from_json(row.value) for row in rows)}

    def wait_for_records(self, count: int) -> dict[str, Reconciliation]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            records = self.records()
            if len(records) >= count:
                return records
            time.sleep(0.5)
        raise AssertionError(f"{count} reconciliations not written in {WAIT_S}s: {self.records()}")

    def last_metric(self) -> ReconcileMetric:
        self.stop.set()  # the final report is written at shutdown
        assert self.thread is not None
        self.thread.join(timeout=30)
        rows = read_all(self.settings.kafka_bootstrap_servers, self.settings.metrics_topic)
        reports = [metric_from_json(r.key, r.value) for r in rows]
        metrics = [m for m in reports if isinstance(m, ReconcileMetric)]
        assert metrics, "no reconciler metrics"
        return max(metrics, key=lambda m: m.time)


@pytest.fixture
def run(bootstrap: str) -> Iterator[Run]:
    topics = {name: unique_topic(name) for name in ("agg", "recon", "metrics")}
    create_topics(bootstrap, topics.values())
    trades = recorded_trades()
    with FakeExchange(symbols=(SYMBOL,), initial_trades=0, first_id=trades[0]["id"]) as exchange:
        exchange.append(SYMBOL, trades=trades)
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            aggregates_topic=topics["agg"],
            reconciliation_topic=topics["recon"],
            metrics_topic=topics["metrics"],
            binance_base_url=exchange.base_url,
            http_timeout_s=5.0,
        )
        stop = threading.Event()
        # No jitter: retries come 1, 2, 4 and 8 s apart, so a hopeless minute is given up in 15 s.
        reconciler = Reconciler(settings, stop, jitter=lambda: 0.0, metrics_interval_s=0.5)
        run = Run(settings, exchange, reconciler, stop)
        try:
            yield run
        finally:
            stop.set()
            if run.thread is not None:
                run.thread.join(timeout=30)
                assert not run.thread.is_alive(), "the reconciler did not stop"


def test_every_recorded_minute_matches_in_one_request(run: Run) -> None:
    windows = final_windows()
    run.start(windows)
    records = run.wait_for_records(14)
    assert len(windows) == 14
    assert {key: r.status for key, r in records.items()} == {w.key: ReconcileStatus.MATCHED for w in windows}
    assert all(r.differences == () for r in records.values())
    metric = run.last_metric()
    assert (metric.matched, metric.mismatched, metric.unavailable) == (14, 0, 0)
    requests = run.exchange.requests(KLINES_PATH)
    assert len(requests) == metric.kline_requests == 1, "14 minutes, one batched request"
    assert requests[0].params["limit"] == "14"
    assert metric.weight_spent == 2


def test_a_wrong_kline_is_a_mismatch_naming_the_field_and_the_difference(run: Run) -> None:
    windows = final_windows()
    wrong = windows[3]
    run.exchange.add_kline_fault(SYMBOL, wrong.window_start, "wrong")
    run.start(windows)
    records = run.wait_for_records(14)
    mismatch = records[wrong.key]
    assert mismatch.status is ReconcileStatus.MISMATCHED
    assert mismatch.differences == (FieldDifference("close", wrong.close, wrong.close + Decimal("0.01")),)
    assert mismatch.differences[0].difference == Decimal("-0.01")
    assert sum(r.status is ReconcileStatus.MATCHED for r in records.values()) == 13

    table: state.ReconciliationTable = {}
    for record in records.values():
        state.record_reconciliation(table, record, cutoff_ms=0)
    summary = state.summarize(table.values())
    assert view.reconciliation_headline(summary) == "13 of 14 minutes matched"
    assert summary.mismatches == (mismatch,)
    assert "close" in view.mismatch_text(mismatch) and "(-0.01)" in view.mismatch_text(mismatch)


def test_a_malformed_kline_is_retried_and_counted_and_then_checked(run: Run) -> None:
    windows = final_windows()
    bad = windows[5]
    run.exchange.add_kline_fault(SYMBOL, bad.window_start, "malformed", times=2)
    run.start(windows)
    records = run.wait_for_records(14)
    assert all(r.status is ReconcileStatus.MATCHED for r in records.values())
    metric = run.last_metric()
    assert (metric.klines_malformed, metric.retries, metric.matched) == (2, 2, 14)
    asked = [r.params for r in run.exchange.requests(KLINES_PATH)]
    assert len(asked) == 3 and asked[1]["startTime"] == asked[2]["startTime"] == str(bad.window_start)


def test_a_kline_that_never_comes_is_unavailable_never_a_match(run: Run) -> None:
    windows = final_windows()
    missing, malformed = windows[0], windows[-1]
    run.exchange.add_kline_fault(SYMBOL, missing.window_start, "missing")
    run.exchange.add_kline_fault(SYMBOL, malformed.window_start, "malformed")
    run.start(windows)
    records = run.wait_for_records(14)
    for window, what in ((missing, "no kline"), (malformed, "malformed kline")):
        record = records[window.key]
        assert record.status is ReconcileStatus.UNAVAILABLE, record
        assert what in record.reason and f"after {MAX_ATTEMPTS} attempts" in record.reason
    metric = run.last_metric()
    assert (metric.matched, metric.unavailable) == (12, 2)
    assert (metric.klines_missing, metric.klines_malformed) == (MAX_ATTEMPTS, MAX_ATTEMPTS)
    assert metric.retries == 2 * (MAX_ATTEMPTS - 1)
    summary = state.summarize(records.values())
    assert view.reconciliation_headline(summary) == "12 of 12 minutes matched, 2 not checked"
