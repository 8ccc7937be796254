"""Binance-shaped trades for the benchmark (pure; a seeded random.Random is passed in).

Prices are cents on a bounded random walk, quantities have 8 places, quoteQty is price x qty cut to
8 places (informational, as on Binance). Times go out of order within MAX_LATE_MS, well inside the
job's 10 s watermark, so every trade must count and every closed window must be exact.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from app.core.windows import WINDOW_MS

MAX_LATE_MS = 4_000  # how far back a trade may be dated against the one before it
LATE_SHARE = 0.1  # share of live trades dated back, i.e. delivered out of order


def _units(value: int, places: int) -> str:
    whole, fraction = divmod(value, 10**places)
    return f"{whole}.{fraction:0{places}d}"


class PriceWalk:
    """A market price in cents, wandering in 60,000-100,000, and random 8-place quantities."""

    def __init__(self, rng: random.Random, cents: int = 6_700_000) -> None:
        self.rng = rng
        self.cents = cents

    def trade(self, time_ms: int) -> dict[str, Any]:
        rng = self.rng
        self.cents = min(10_000_000, max(6_000_000, self.cents + rng.randint(-150, 150)))
        qty = rng.randint(1, 200_000_000)  # up to 2 BTC, in 1e-8
        return {
            "price": _units(self.cents * 10**6, 8),
            "qty": _units(qty, 8),
            "quoteQty": _units(self.cents * qty // 100, 8),
            "time": time_ms,
            "isBuyerMaker": rng.random() < 0.5,
            "isBestMatch": True,
        }


def live_trades(walk: PriceWalk, count: int, now_ms: int) -> list[dict[str, Any]]:
    """`count` trades happening now (no ids: the exchange numbers them); LATE_SHARE of them dated up
    to MAX_LATE_MS back, so they reach the job out of event-time order."""
    trades = []
    for _ in range(count):
        late = walk.rng.randint(1, MAX_LATE_MS) if walk.rng.random() < LATE_SHARE else 0
        trade = walk.trade(now_ms - late)
        trade["late_ms"] = late
        trades.append(trade)
    return trades


def replay_windows(
    rng: random.Random,
    symbols: tuple[str, ...],
    count: int,
    first_window_ms: int,
    minutes: int,
    first_id: int = 1,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """`count` trades with ids over `minutes` windows per symbol, yielded one (symbol, window) at a
    time (so a million trades never sit in memory at once). Within a window times run forward but
    are dated back by up to MAX_LATE_MS, never before the window's start."""
    per_window = count // (len(symbols) * minutes)
    walks = {symbol: PriceWalk(rng, 6_700_000 + 100_000 * i) for i, symbol in enumerate(symbols)}
    next_id = dict.fromkeys(symbols, first_id)
    for minute in range(minutes):
        start = first_window_ms + minute * WINDOW_MS
        for symbol in symbols:
            walk, trades = walks[symbol], []
            for i in range(per_window):
                ordered = start + MAX_LATE_MS + (WINDOW_MS - MAX_LATE_MS) * i // per_window
                trade = walk.trade(max(start, ordered - rng.randint(0, MAX_LATE_MS)))
                trade["id"] = next_id[symbol]
                next_id[symbol] += 1
                trades.append(trade)
            yield symbol, trades
