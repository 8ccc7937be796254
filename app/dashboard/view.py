"""Pure view computations for the dashboard: KPIs in Decimal, the chart's data frame, display text.

No Kafka and no Streamlit here, so every figure the dashboard shows can be tested exactly. Inputs are
a symbol's windows oldest first, as `WindowFeed.windows()` returns them.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal

import pandas as pd

from app.common.schema import FieldDifference, Reconciliation, WindowStats
from app.core.windows import WINDOW_MS, window_start
from app.dashboard.state import ReconciliationSummary

BPS = Decimal(10_000)
BPS_QUANTUM = Decimal("0.01")
RATE_QUANTUM = Decimal("0.01")
SECONDS_QUANTUM = Decimal("0.1")
PRICE_QUANTUM = Decimal("0.01")
_EXACT = Context(prec=100)


@dataclass(frozen=True, slots=True)
class Kpis:
    """Headline figures of the symbol's newest window."""

    window_start: int
    is_final: bool
    last_price: Decimal  # close of the newest window, i.e. the last trade's price
    vwap: Decimal  # VWAP of the newest window, as Spark computed it
    price_vs_vwap_bps: Decimal
    trades_per_s: Decimal  # over the last completed minute


def price_vs_vwap_bps(price: Decimal, vwap: Decimal) -> Decimal:
    """(price - vwap) / vwap in basis points, rounded once to 0.01 bp, half to even."""
    if vwap <= 0:
        raise ValueError(f"VWAP must be positive, got {vwap}")
    ratio = _EXACT.divide(_EXACT.multiply(price - vwap, BPS), vwap)
    return ratio.quantize(BPS_QUANTUM, rounding=ROUND_HALF_EVEN)


def trades_per_second(windows: Sequence[WindowStats], now_ms: int) -> Decimal:
    """Trades in the last completed minute divided by 60 (no window for that minute means none)."""
    previous_start = window_start(now_ms) - WINDOW_MS
    index = _index_of(windows, previous_start)
    count = windows[index].trade_count if index is not None else 0
    return (Decimal(count) / Decimal(WINDOW_MS // 1000)).quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN)


def kpis(windows: Sequence[WindowStats], now_ms: int) -> Kpis | None:
    if not windows:
        return None
    newest = windows[-1]
    return Kpis(
        window_start=newest.window_start,
        is_final=newest.is_final,
        last_price=newest.close,
        vwap=newest.vwap,
        price_vs_vwap_bps=price_vs_vwap_bps(newest.close, newest.vwap),
        trades_per_s=trades_per_second(windows, now_ms),
    )


def freshness_s(windows: Sequence[WindowStats], now_ms: int) -> Decimal | None:
    """Seconds since the newest trade the pipeline has aggregated (to 0.1 s)."""
    if not windows:
        return None
    return (Decimal(now_ms - windows[-1].last_trade_time) / 1000).quantize(
        SECONDS_QUANTUM, rounding=ROUND_HALF_EVEN
    )


def recent(windows: Sequence[WindowStats], minutes: int) -> Sequence[WindowStats]:
    """The windows of the last `minutes` minutes, counted back from the newest window."""
    if not windows:
        return windows
    since = windows[-1].window_start - (minutes - 1) * WINDOW_MS
    starts = [w.window_start for w in windows]
    return windows[bisect.bisect_left(starts, since) :]


def _index_of(windows: Sequence[WindowStats], start: int) -> int | None:
    # Windows are sorted by start and the wanted one is almost always among the last two.
    for index in range(len(windows) - 1, max(len(windows) - 3, -1), -1):
        if windows[index].window_start == start:
            return index
        if windows[index].window_start < start:
            return None
    return None


CANDLE_COLUMNS = (
    "time",
    "open",
    "high",
    "low",
    "close",
    "vwap",
    "volume",
    "trades",
    "rising",
    "final",
    "ohlc",
    "vwap_text",
    "volume_text",
)


def candles_frame(windows: Sequence[WindowStats]) -> pd.DataFrame:
    """One row per window for the chart.

    Numeric columns are floats because Vega-Lite plots JSON numbers; the exact Decimal values travel
    as text columns for the tooltips, so what a user reads is never a rounded float.
    """
    frame = pd.DataFrame.from_records([_candle(w) for w in windows], columns=list(CANDLE_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"].astype("int64"), unit="ms", utc=True)
    return frame


# Windows are immutable and all but the newest one or two are unchanged between refreshes, so each
# row is converted once; 8 symbols x 24 h of minutes fit in the cache.
@functools.lru_cache(maxsize=16_384)
def _candle(w: WindowStats) -> tuple[object, ...]:
    return (
        w.window_start,
        float(w.open),
        float(w.high),
        float(w.low),
        float(w.close),
        float(w.vwap),
        float(w.base_volume),
        w.trade_count,
        w.close >= w.open,
        w.is_final,
        f"{format_price(w.open)} / {format_price(w.high)} / {format_price(w.low)} / {format_price(w.close)}",
        str(w.vwap),
        str(w.base_volume.normalize()),
    )


def format_price(price: Decimal) -> str:
    """Thousands separators; at least two places, more only when the price carries them."""
    shown = price.quantize(PRICE_QUANTUM) if price == price.quantize(PRICE_QUANTUM) else price.normalize()
    return f"{shown:,}"


def format_bps(bps: Decimal) -> str:
    return f"{bps:+} bps"


def format_age(seconds: Decimal | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{(seconds / 60).quantize(SECONDS_QUANTUM)} min"
    return f"{(seconds / 3600).quantize(SECONDS_QUANTUM)} h"


def format_share(share: Decimal | None) -> str:
    """A share as a percentage with two places, truncated: 99.999 % never shows as 100.00 %."""
    if share is None:
        return "n/a"
    return f"{(share * 100).quantize(Decimal('0.01'), rounding=ROUND_DOWN)} %"


# ----------------------------------------------------------------------------- reconciliation


def reconciliation_headline(summary: ReconciliationSummary) -> str:
    """'N of M minutes matched', and how many could not be checked when some could not."""
    text = f"{summary.matched:,} of {summary.checked:,} minutes matched"
    return text + (f", {summary.unavailable:,} not checked" if summary.unavailable else "")


def mismatch_text(record: Reconciliation) -> str:
    """One mismatch as an alarm line: the minute, then each field, both values and the difference."""
    minute = datetime.fromtimestamp(record.window_start / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{record.symbol} {minute}: " + "; ".join(_difference_text(d) for d in record.differences)


def _difference_text(difference: FieldDifference) -> str:
    return (
        f"{difference.field} {difference.pipeline.normalize():f} vs exchange "
        f"{difference.exchange.normalize():f} ({difference.difference.normalize():+f})"
    )
