"""The trades every case feeds: deterministic for a seed, Binance-shaped, two symbols, times
shuffled against ids within the watermark, spread over a few 1-minute windows whose start is
anchored once per run (so every case of a run produces the same window keys)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.core.windows import WINDOW_MS

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


def make_trades(count: int, windows: int, first_window_ms: int, rng: random.Random) -> list[dict[str, Any]]:
    """`count` trades spread over `windows` minutes from `first_window_ms`, times shuffled."""
    span = windows * WINDOW_MS - MAX_SHUFFLE_MS
    base_price = Decimal(rng.randint(2_000_000, 9_000_000)).scaleb(-2)
    trades = []
    for i in range(count):
        ordered_time = first_window_ms + MAX_SHUFFLE_MS + span * i // count
        price = base_price + Decimal(rng.randint(-50_000, 50_000)).scaleb(-2)
        qty = Decimal(rng.randint(1, 300_000_000)).scaleb(-8)
        trades.append(
            {
                "price": f"{price:.8f}",
                "qty": f"{qty:.8f}",
                "quoteQty": f"{price * qty:.8f}",
                "time": ordered_time - rng.randint(0, MAX_SHUFFLE_MS),
                "isBuyerMaker": rng.random() < 0.5,
                "isBestMatch": True,
            }
        )
    return trades


def closer_trade(time_ms: int) -> dict[str, Any]:
    """A trade far enough ahead that the watermark passes every window of the data set."""
    return {"price": "1.00000000", "qty": "1.00000000", "quoteQty": "1.00000000", "time": time_ms,
            "isBuyerMaker": False, "isBestMatch": True}  # fmt: skip


def build(seed: int, per_symbol: int, windows: int, first_window_ms: int) -> Dataset:
    rng = random.Random(seed)
    trades = {s: make_trades(per_symbol, windows, first_window_ms, rng) for s in SYMBOLS}
    closing_ms = first_window_ms + (windows + 1) * WINDOW_MS + 30_000
    return Dataset(first_window_ms, windows, trades, {s: closer_trade(closing_ms) for s in SYMBOLS})


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
