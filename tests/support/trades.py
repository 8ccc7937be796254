"""Binance-shaped trades for whole-pipeline runs: a seeded batch with times shuffled against ids,
and the "closer" that moves the watermark past every window before it."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from app.core.windows import WINDOW_MS


def shuffled_trades(
    count: int, windows: int, first_window_ms: int, rng: random.Random, max_shuffle_ms: int
) -> list[dict[str, Any]]:
    """`count` trades spread over `windows` minutes from `first_window_ms`, each dated up to
    `max_shuffle_ms` earlier than its place in id order (out of order, but inside the windows)."""
    span = windows * WINDOW_MS - max_shuffle_ms
    base_price = Decimal(rng.randint(2_000_000, 9_000_000)).scaleb(-2)
    trades = []
    for i in range(count):
        ordered_time = first_window_ms + max_shuffle_ms + span * i // count
        price = base_price + Decimal(rng.randint(-50_000, 50_000)).scaleb(-2)
        qty = Decimal(rng.randint(1, 300_000_000)).scaleb(-8)
        trades.append(
            {
                "price": f"{price:.8f}",
                "qty": f"{qty:.8f}",
                "quoteQty": f"{price * qty:.8f}",
                "time": ordered_time - rng.randint(0, max_shuffle_ms),
                "isBuyerMaker": rng.random() < 0.5,
                "isBestMatch": True,
            }
        )
    return trades


def closer(time_ms: int, trade_id: int | None = None) -> dict[str, Any]:
    """One trade far enough ahead that the watermark passes every window before it."""
    trade: dict[str, Any] = {
        "price": "1.00000000",
        "qty": "1.00000000",
        "quoteQty": "1.00000000",
        "time": time_ms,
        "isBuyerMaker": False,
        "isBestMatch": True,
    }
    if trade_id is not None:
        trade["id"] = trade_id
    return trade
