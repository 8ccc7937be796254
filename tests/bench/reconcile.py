"""Reconciliation's weight at one symbol, as a share of the default budget (target <= 2 %).

The real reconciler process (`python -m app.reconcile`) runs against the fake exchange over HTTP
while a live market ticks for `minutes` whole minutes. Ten seconds (the default watermark) after
each minute ends, the minute's final window is written to the aggregates topic, as the Spark job's
final query writes it at steady state; the window is the reference aggregation of the exchange's
trades (the Spark job is measured elsewhere, and its finals are tested equal to this). The kline
requests in the exchange's log give the weight spent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from app.common.schema import ReconcileStatus, Reconciliation, now_ms, window_key
from app.common.settings import Settings
from app.core.windows import WINDOW_MS, aggregate_window, window_start
from app.localkafka.broker import LocalBroker
from app.producer.trades import trade_from_binance
from tests.bench.checks import Figure
from tests.support.fake_exchange import KLINES_PATH, FakeExchange
from tests.support.kafka import read_all, write_raw
from tests.support.pipeline import Process, pipeline_env, wait_for

SYMBOL = "BTCUSDT"
MINUTES = 3
TRADES_PER_S = 20
FINAL_AFTER_MS = Settings().watermark_delay.ms
TARGET_SHARE_PERCENT = 2.0


def run_reconciliation(broker: LocalBroker, work: Path, minutes: int = MINUTES) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    bootstrap = broker.bootstrap_servers
    budget = Settings().weight_budget_per_minute
    env = pipeline_env(bootstrap, work / "checkpoints", (SYMBOL,))
    env["TELEMETRY_WEIGHT_BUDGET_PER_MINUTE"] = str(budget)
    aggregates, out = env["TELEMETRY_AGGREGATES_TOPIC"], env["TELEMETRY_RECONCILIATION_TOPIC"]
    with FakeExchange(symbols=(SYMBOL,), initial_trades=0) as exchange:
        env["TELEMETRY_BINANCE_BASE_URL"] = exchange.base_url
        reconciler = Process("app.reconcile", env, work / "reconcile.log")
        try:
            exchange.start_ticker(TRADES_PER_S)
            first = window_start(now_ms()) + WINDOW_MS  # the first whole minute
            starts = [first + i * WINDOW_MS for i in range(minutes)]
            for start in starts:
                time.sleep(max(0.0, (start + WINDOW_MS + FINAL_AFTER_MS - now_ms()) / 1000))
                trades = [
                    trade_from_binance(t, SYMBOL, 0)
                    for t in exchange.trades(SYMBOL)
                    if window_start(t["time"]) == start
                ]
                final = aggregate_window(trades, is_final=True)
                write_raw(bootstrap, aggregates, [(final.key.encode(), final.to_json(), None)])
            keys = {window_key(SYMBOL, start) for start in starts}

            def checked() -> dict[str, Reconciliation]:
                records = (Reconciliation.from_json(r.value) for r in read_all(bootstrap, out))
                return {r.key: r for r in records if r.key in keys}

            wait_for(lambda: len(checked()) == len(keys), 60, "the reconciliations", [reconciler])
            elapsed_minutes = (now_ms() - first) / WINDOW_MS
        finally:
            exchange.stop_ticker()
            reconciler.stop()
        kline_requests = exchange.requests(KLINES_PATH)
    weight = sum(r.weight for r in kline_requests)
    per_minute = weight / elapsed_minutes
    return {
        "symbols": 1,
        "minutes": minutes,
        "elapsed_minutes": round(elapsed_minutes, 2),
        "kline_requests": len(kline_requests),
        "weight": weight,
        "weight_per_minute": round(per_minute, 3),
        "budget_per_minute": budget,
        "share_percent": round(100 * per_minute / budget, 4),
        "matched": sum(r.status is ReconcileStatus.MATCHED for r in checked().values()),
    }


def figures(run: dict[str, Any] | None) -> list[Figure]:
    if not run:
        return []
    return [
        Figure(
            f"reconciliation weight, 1 symbol, {run['minutes']} minutes ({run['matched']} matched)",
            f"{run['weight']} weight in {run['kline_requests']} requests = {run['weight_per_minute']}/min "
            f"= {run['share_percent']} % of {run['budget_per_minute']}",
            f"<= {TARGET_SHARE_PERCENT} % of the budget",
            run["share_percent"] <= TARGET_SHARE_PERCENT,
        )
    ]


def failures(run: dict[str, Any] | None) -> list[str]:
    if run and run["matched"] != run["minutes"]:
        return [f"reconciliation: {run['matched']} of {run['minutes']} minutes matched"]
    return []
