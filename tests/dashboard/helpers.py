"""Builders for the dashboard tests: realistic windows aggregated from trades, and topic seeding."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from app.common.schema import SparkLedger, SparkMetric, Trade, WindowStats
from app.core.windows import WINDOW_MS, aggregate_window
from tests.support.kafka import write_raw


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def minute(ms: int) -> int:
    return ms - ms % WINDOW_MS


def window(
    start: int,
    prices: Sequence[str],
    qtys: Sequence[str] | None = None,
    *,
    symbol: str = "BTCUSDT",
    is_final: bool = False,
    first_id: int = 1,
    step_ms: int | None = None,
) -> WindowStats:
    """The window that the reference aggregation gives for these trades, 1 s apart from `start`
    (closer together when there are too many to fit in the minute)."""
    qtys = qtys or ["0.5"] * len(prices)
    step = step_ms or (1000 if len(prices) < WINDOW_MS // 1000 else (WINDOW_MS - 1000) // len(prices))
    trades = [
        Trade(
            trade_id=first_id + i,
            symbol=symbol,
            price=Decimal(price),
            qty=Decimal(qty),
            quote_qty=Decimal(price) * Decimal(qty),
            trade_time=start + step * (i + 1),
            is_buyer_maker=i % 2 == 0,
        )
        for i, (price, qty) in enumerate(zip(prices, qtys, strict=True))
    ]
    return aggregate_window(trades, is_final=is_final)


def final(stats: WindowStats) -> WindowStats:
    return replace(stats, is_final=True)


def seed_windows(
    bootstrap: str, topic: str, rows: Iterable[WindowStats], timestamp_ms: int | None = None
) -> None:
    write_raw(bootstrap, topic, [(row.key.encode(), row.to_json(), timestamp_ms) for row in rows])


def seed_metrics(bootstrap: str, topic: str, reports: Iterable[dict[str, Any]]) -> None:
    write_raw(
        bootstrap,
        topic,
        [(str(r["source"]).encode(), json.dumps(r).encode(), None) for r in reports],
    )


def spark_report(query: str, batch_id: int, time_ms: int, watermark: int | None = None) -> dict[str, Any]:
    metric = SparkMetric(query=query, batch_id=batch_id, time=time_ms, num_input_rows=10, watermark=watermark)
    return dict(json.loads(metric.to_json()))


def ledger_report(symbol: str, **counts: int) -> dict[str, Any]:
    return {**json.loads(SparkLedger(symbol=symbol, time=now_ms()).to_json()), **counts}


def producer_report(time_ms: int, published: int, **overrides: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "source": "producer",
        "time": time_ms,
        "trades_published": published,
        "polls": 10,
        "gaps_backfilled": 0,
        "http_errors": {},
        "rate_limited_429": 0,
        "banned_418": 0,
        "used_weight_1m": 20,
        "budget_per_minute": 3000,
    }
    report.update(overrides)
    return report
