"""The exact reference (app.core.windows) against Binance's own 1-minute candles, on recorded trades."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from app.common.schema import Trade, window_key
from app.core.windows import aggregate_all
from tests.support.exact import half_even_8
from tests.support.recorded import SYMBOL, complete_minute_klines, recorded_trades


def test_every_complete_minute_equals_the_exchanges_kline_in_every_field() -> None:
    trades = [
        Trade(
            trade_id=t["id"],
            symbol=SYMBOL,
            price=Decimal(t["price"]),
            qty=Decimal(t["qty"]),
            quote_qty=Decimal(t["quoteQty"]),
            trade_time=t["time"],
            is_buyer_maker=t["isBuyerMaker"],
        )
        for t in recorded_trades()
    ]
    windows = aggregate_all(trades)
    klines = complete_minute_klines()
    assert len(klines) == 14
    for kline in klines:
        got = windows[window_key(SYMBOL, kline.open_time)]
        assert (got.open, got.high, got.low, got.close) == (kline.open, kline.high, kline.low, kline.close)
        assert got.base_volume == kline.volume
        assert got.quote_volume == kline.quote_volume
        assert got.trade_count == kline.trade_count
        # The exchange publishes no VWAP; its quote volume / volume is the minute's VWAP exactly.
        assert got.vwap == half_even_8(Fraction(kline.quote_volume) / Fraction(kline.volume))
