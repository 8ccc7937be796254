"""Binance 1-minute klines, and a final window compared with one: pure, exact, no I/O.

A kline (`GET /api/v3/klines`) is an array: open time, open, high, low, close, volume, close time,
quote asset volume, number of trades, taker buy base volume, taker buy quote volume, ignore. Its
volume is the minute's Σqty and its quote volume Σ(price·qty), so quote volume / volume is exactly
the minute's VWAP, which the window carries rounded once to 8 places.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.common.schema import FieldDifference, ReconcileStatus, Reconciliation, WindowStats
from app.core.windows import WINDOW_MS, vwap

# A kline's decimals are plain strings, 8 places on Binance; the quote volume of a fake exchange
# may carry more (Σ price·qty unrounded), so only the form is checked, not the places.
_DECIMAL = re.compile(r"[0-9]{1,40}(\.[0-9]{1,40})?")
_FIELDS = 9  # a row must reach the number of trades


class KlineError(ValueError):
    """A kline row, or a whole answer, that does not have the API's layout."""


@dataclass(frozen=True, slots=True)
class Kline:
    """One `GET /api/v3/klines` row, the fields a window shares with it."""

    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trade_count: int

    @classmethod
    def from_api(cls, row: Any) -> Kline:
        if not isinstance(row, list) or len(row) < _FIELDS:
            raise KlineError(f"a kline is an array of at least {_FIELDS} items, got {row!r:.200}")
        open_time, close_time, count = _integer(row[0]), _integer(row[6]), _integer(row[8])
        if open_time % WINDOW_MS or close_time != open_time + WINDOW_MS - 1:
            raise KlineError(f"not a 1-minute kline: open {open_time}, close {close_time}")
        return cls(
            open_time=open_time,
            open=_decimal(row[1]),
            high=_decimal(row[2]),
            low=_decimal(row[3]),
            close=_decimal(row[4]),
            volume=_decimal(row[5]),
            quote_volume=_decimal(row[7]),
            trade_count=count,
        )


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise KlineError(f"expected a non-negative integer, got {value!r}")
    return value


def _decimal(value: Any) -> Decimal:
    # A JSON number would have gone through a float: never money.
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise KlineError(f"expected a decimal string, got {value!r}")
    return Decimal(value)


@dataclass(frozen=True, slots=True)
class KlineAnswer:
    """One answer's rows by open time: a readable kline, or why that row could not be read."""

    klines: dict[int, Kline]
    malformed: dict[int, str]


def parse_answer(body: bytes) -> KlineAnswer:
    """KlineError if the body is not a JSON array; a bad row is kept apart under its open time
    when it has one (else the answer as a whole is malformed)."""
    try:
        rows = json.loads(body)
    except ValueError as exc:
        raise KlineError(f"not JSON: {exc}") from None
    if not isinstance(rows, list):
        raise KlineError(f"not an array of klines: {body[:200]!r}")
    klines: dict[int, Kline] = {}
    malformed: dict[int, str] = {}
    for row in rows:
        try:
            kline = Kline.from_api(row)
        except KlineError as exc:
            if not (isinstance(row, list) and row and isinstance(row[0], int)):
                raise
            malformed[row[0]] = str(exc)
            continue
        klines[kline.open_time] = kline
    return KlineAnswer(klines, malformed)


# The fields compared, as (WindowStats field, the kline's value): the VWAP is the kline's quote
# volume / volume at the window's 8 places.
COMPARED: tuple[tuple[str, Callable[[Kline], Decimal]], ...] = (
    ("open", lambda k: k.open),
    ("high", lambda k: k.high),
    ("low", lambda k: k.low),
    ("close", lambda k: k.close),
    ("base_volume", lambda k: k.volume),
    ("quote_volume", lambda k: k.quote_volume),
    ("trade_count", lambda k: Decimal(k.trade_count)),
    ("vwap", lambda k: vwap(k.quote_volume, k.volume) if k.volume else Decimal(0)),
)


def reconcile(window: WindowStats, kline: Kline, now_ms: int) -> Reconciliation:
    """The window against the exchange's kline of the same minute, every field exactly."""
    if kline.open_time != window.window_start:
        raise ValueError(f"kline of {kline.open_time} is not the window of {window.window_start}")
    differences = tuple(
        FieldDifference(name, Decimal(getattr(window, name)), exchange)
        for name, of_kline in COMPARED
        if Decimal(getattr(window, name)) != (exchange := of_kline(kline))
    )
    status = ReconcileStatus.MISMATCHED if differences else ReconcileStatus.MATCHED
    return Reconciliation(window.symbol, window.window_start, status, differences, checked_at=now_ms)


def unavailable(window: WindowStats, reason: str, now_ms: int) -> Reconciliation:
    """No usable kline after every retry: recorded as not checked, never as a match."""
    return Reconciliation(
        window.symbol, window.window_start, ReconcileStatus.UNAVAILABLE, reason=reason, checked_at=now_ms
    )
