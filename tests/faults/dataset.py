"""The trades every case feeds: deterministic for a seed, Binance-shaped, two symbols, times
shuffled against ids within the watermark, spread over a few 1-minute windows whose start is
anchored once per run (so every case of a run produces the same window keys)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from app.core.windows import WINDOW_MS, window_start
from tests.support.trades import closer, shuffled_trades

SYMBOLS = ("BTCUSDT", "ETHUSDT")
MAX_SHUFFLE_MS = 3_000  # out of order by up to 3 s: well inside the 10 s watermark


@dataclass(frozen=True)
class Dataset:
    """Per symbol: the trades in id order (ids are assigned by the exchange) and a closer."""

    first_window_ms: int
    windows: int
    trades: dict[str, list[dict[str, Any]]]
    closers: dict[str, dict[str, Any]]

    def chunks(self, symbol: str, size: int) -> list[list[dict[str, Any]]]:
        rows = self.trades[symbol]
        return [rows[i : i + size] for i in range(0, len(rows), size)]


def burst_watermark_minutes(windows: int) -> int:
    """The id_gap case's watermark: longer than all the trades together.

    The data is dated minutes back, so a burst appended now is older than the producer's earlier
    polls. A real exchange never does that, and the producer's event-time hold relies on it: a trade
    it has not seen yet is newer than its last request. One symbol's burst (minutes of event time)
    could then reach the job before the other's and make those trades late; with this watermark no
    trade can be."""
    return windows + 1


def first_window_of_run(windows: int, now_ms: int) -> int:
    """The data's first window: old enough that the closers, past every case's watermark, are
    already in the past (the producer holds back trades dated ahead of the clock)."""
    return window_start(now_ms) - (windows + burst_watermark_minutes(windows) + 3) * WINDOW_MS


def build(seed: int, per_symbol: int, windows: int, first_window_ms: int) -> Dataset:
    rng = random.Random(seed)
    trades = {s: shuffled_trades(per_symbol, windows, first_window_ms, rng, MAX_SHUFFLE_MS) for s in SYMBOLS}
    # Past every watermark a case runs with, the 10 s default and the id_gap case's.
    closing_ms = first_window_ms + (windows + burst_watermark_minutes(windows)) * WINDOW_MS + 30_000
    return Dataset(first_window_ms, windows, trades, {s: closer(closing_ms) for s in SYMBOLS})


def _record(**changes: object) -> bytes:
    good: dict[str, object] = {
        "trade_id": 1, "symbol": "BTCUSDT", "price": "1.00000000", "qty": "1.00000000",
        "quote_qty": "1.00000000", "trade_time": 1_700_000_000_000, "is_buyer_maker": False,
        "ingest_time": 0,
    }  # fmt: skip
    for name, value in changes.items():
        if value is None:
            good.pop(name, None)
        else:
            good[name] = value
    return json.dumps(good).encode()


# (kind, value) of the records the bad_records case writes straight into the raw topic; every one
# must go to the dead-letter topic and none may touch an aggregate. The symbol is one nobody
# trades, so none of them can pass as the tail of a real symbol either.
BAD_RECORDS: list[tuple[str, bytes | None]] = [
    ("empty value", None),
    ("not JSON", b"this is not json"),
    ("truncated JSON", _record(symbol="BADUSDT")[:40]),
    ("invalid UTF-8", b'{"symbol": "\xff\xfe"}'),
    ("JSON array", b"[1, 2, 3]"),
    ("symbol missing", _record(symbol=None)),
    ("trade_id as string", _record(symbol="BADUSDT", trade_id="12")),
    ("negative trade_id", _record(symbol="BADUSDT", trade_id=-1)),
    ("trade_time missing", _record(symbol="BADUSDT", trade_time=None)),
    ("is_buyer_maker not boolean", _record(symbol="BADUSDT", is_buyer_maker="yes")),
    ("float price", _record(symbol="BADUSDT", price=67000.5)),
    ("price with 9 places", _record(symbol="BADUSDT", price="1.123456789")),
    ("zero qty", _record(symbol="BADUSDT", qty="0")),
    ("price x qty too large", _record(symbol="BADUSDT", price="99999999999999999999.5", qty="99999999999.0")),
]
