"""Real recorded Binance trades through every real part, checked against Binance's own candles.

The fake exchange reveals the 500 recorded Spot-testnet trades (tests/data/binance-spot-testnet) in
small batches, as the exchange published them; the live REST source polls them into the real broker
and the real Spark job aggregates them. Each of the 14 complete minutes' final window must equal the
exchange's kline for that minute in every field it shares, and its VWAP must be the kline's quote
volume / volume, exactly. The reconciler, fetching the fake exchange's klines over HTTP, must then
report all 14 minutes matched, as the dashboard sums them up.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import pytest

from app.common.schema import ReconcileStatus, Reconciliation, Trade, WindowStats, window_key
from app.common.settings import Settings
from app.dashboard import state, view
from tests.support.exact import half_even_8
from tests.support.fake_exchange import KLINES_PATH, TRADES_PATH, FakeExchange
from tests.support.kafka import read_all
from tests.support.pipeline import Process, pipeline_env, wait_for
from tests.support.recorded import SYMBOL, complete_minute_klines, recorded_trades

REVEAL_BATCH = 20
REVEAL_EVERY_S = 0.25

pytestmark = pytest.mark.e2e


def test_final_windows_of_recorded_trades_equal_the_exchanges_klines(bootstrap: str, tmp_path: Path) -> None:
    env = pipeline_env(bootstrap, tmp_path / "checkpoints", (SYMBOL,))
    settings = Settings.from_env(env)
    trades = recorded_trades()
    klines = complete_minute_klines()
    wanted = {window_key(SYMBOL, k.open_time): k for k in klines}

    def final_rows() -> dict[str, WindowStats]:
        rows = [WindowStats.from_json(r.value) for r in read_all(bootstrap, settings.aggregates_topic)]
        return {w.key: w for w in rows if w.is_final}

    def reconciliations() -> dict[str, Reconciliation]:
        rows = [Reconciliation.from_json(r.value) for r in read_all(bootstrap, settings.reconciliation_topic)]
        return {r.key: r for r in rows}

    processes: list[Process] = []
    with FakeExchange(symbols=(SYMBOL,), initial_trades=0, first_id=trades[0]["id"]) as exchange:
        env["TELEMETRY_BINANCE_BASE_URL"] = exchange.base_url
        try:
            processes.append(Process("app.processing", env, tmp_path / "processing.log"))
            processes.append(Process("app.producer", env, tmp_path / "producer.log"))
            processes.append(Process("app.reconcile", env, tmp_path / "reconcile.log"))
            wait_for(lambda: len(exchange.requests(TRADES_PATH)) >= 2, 120, "the first polls", processes)
            for offset in range(0, len(trades), REVEAL_BATCH):
                exchange.append(SYMBOL, trades=trades[offset : offset + REVEAL_BATCH])
                time.sleep(REVEAL_EVERY_S)
            wait_for(lambda: wanted.keys() <= final_rows().keys(), 300, "the 14 final windows", processes)
            wait_for(
                lambda: wanted.keys() <= reconciliations().keys(), 120, "the 14 reconciliations", processes
            )
            kline_weight = sum(r.weight for r in exchange.requests(KLINES_PATH))
        finally:
            for process in reversed(processes):
                process.stop()

    raw = [Trade.from_json(r.value) for r in read_all(bootstrap, settings.raw_topic)]
    assert sorted(t.trade_id for t in raw) == [t["id"] for t in trades], "lost or doubled trades"

    finals = final_rows()
    assert len(wanted) == 14
    for key, kline in wanted.items():
        got = finals[key]
        assert (got.open, got.high, got.low, got.close) == (kline.open, kline.high, kline.low, kline.close), (
            key
        )
        assert got.base_volume == kline.volume, key
        assert got.quote_volume == kline.quote_volume, key
        assert got.trade_count == kline.trade_count, key
        assert got.vwap == half_even_8(Fraction(kline.quote_volume) / Fraction(kline.volume)), key

    checked = {key: record for key, record in reconciliations().items() if key in wanted}
    assert {r.status for r in checked.values()} == {ReconcileStatus.MATCHED}, checked
    assert view.reconciliation_headline(state.summarize(checked.values())) == "14 of 14 minutes matched"
    assert 0 < kline_weight <= 2 * len(wanted), "klines are fetched in batches, at weight 2 each"
