"""Pure financial computation: window assignment, VWAP and OHLC over trades.

No I/O here. The Spark job expresses the same computation declaratively; this module is the
reference it is tested against and what the producer/dashboard use for small computations.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Context, Decimal

from app.common.schema import Trade, WindowStats

WINDOW_MS = 60_000
# VWAP is reported with the price's own 8 decimal places, rounded once, half to even.
VWAP_SCALE = 8
VWAP_QUANTUM = Decimal(1).scaleb(-VWAP_SCALE)
# Enough digits that no intermediate sum or quotient is ever rounded before the final quantize.
_EXACT = Context(prec=100)


def window_start(trade_time_ms: int) -> int:
    """Start (ms, inclusive) of the 1-minute tumbling window that holds this instant."""
    return trade_time_ms - trade_time_ms % WINDOW_MS


def vwap(notional: Decimal, base_volume: Decimal) -> Decimal:
    """Σ(price·qty) / Σqty rounded once to VWAP_SCALE places, half to even."""
    return _EXACT.divide(notional, base_volume).quantize(VWAP_QUANTUM, rounding=ROUND_HALF_EVEN)


def aggregate_window(trades: Iterable[Trade], *, is_final: bool = False) -> WindowStats:
    """Stats of trades that all fall in one symbol's window (order of input does not matter)."""
    ordered = sorted(trades, key=lambda t: (t.trade_time, t.trade_id))
    if not ordered:
        raise ValueError("a window needs at least one trade")
    first, last = ordered[0], ordered[-1]
    start = window_start(first.trade_time)
    if any(t.symbol != first.symbol or window_start(t.trade_time) != start for t in ordered):
        raise ValueError("trades span more than one symbol or window")
    notional = sum((_EXACT.multiply(t.price, t.qty) for t in ordered), Decimal(0))
    base_volume = sum((t.qty for t in ordered), Decimal(0))
    return WindowStats(
        symbol=first.symbol,
        window_start=start,
        window_end=start + WINDOW_MS,
        open=first.price,
        high=max(t.price for t in ordered),
        low=min(t.price for t in ordered),
        close=last.price,
        vwap=vwap(notional, base_volume),
        base_volume=base_volume,
        quote_volume=notional,
        trade_count=len(ordered),
        first_trade_id=min(t.trade_id for t in ordered),
        last_trade_id=max(t.trade_id for t in ordered),
        last_trade_time=last.trade_time,
        is_final=is_final,
    )


def aggregate_all(trades: Iterable[Trade]) -> dict[str, WindowStats]:
    """Group trades by (symbol, window) and aggregate each group; keyed by `WindowStats.key`."""
    groups: dict[tuple[str, int], list[Trade]] = {}
    for trade in trades:
        groups.setdefault((trade.symbol, window_start(trade.trade_time)), []).append(trade)
    stats = (aggregate_window(group) for group in groups.values())
    return {s.key: s for s in stats}
