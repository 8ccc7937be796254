"""The recorded Binance Spot testnet trades and 1-minute klines in tests/data (see its README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.core.windows import WINDOW_MS
from app.reconcile.klines import Kline

DATA = Path(__file__).resolve().parents[1] / "data" / "binance-spot-testnet"
SYMBOL = "BTCUSDT"
TRADES_FILE = DATA / "trades_BTCUSDT_20260615T0638-0653Z.json"
KLINES_FILE = DATA / "klines_1m_BTCUSDT_20260615T0638-0653Z.json"


def recorded_trades() -> list[dict[str, Any]]:
    """The 500 trades in `GET /api/v3/trades` layout, ascending id."""
    trades: list[dict[str, Any]] = json.loads(TRADES_FILE.read_text())
    return trades


def complete_minute_klines() -> list[Kline]:
    """The klines of the minutes the recording covers from start to end (the first and last are
    partial: the recording starts mid-minute and the last kline was taken after the trades)."""
    trades = recorded_trades()
    first_ms, last_ms = trades[0]["time"], trades[-1]["time"]
    klines = [Kline.from_api(row) for row in json.loads(KLINES_FILE.read_text())]
    return [k for k in klines if k.open_time > first_ms and k.open_time + WINDOW_MS <= last_ms]
