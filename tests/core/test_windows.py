"""The pure window/VWAP/OHLC reference against an independent exact-rational computation."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import pytest

from app.common.schema import Trade
from app.core.windows import WINDOW_MS, aggregate_all, aggregate_window, vwap, window_start
from tests.support.exact import half_even_8


def trade(trade_id: int, price: str, qty: str, time_ms: int, symbol: str = "BTCUSDT") -> Trade:
    return Trade(
        trade_id, symbol, Decimal(price), Decimal(qty), Decimal(price) * Decimal(qty), time_ms, False
    )


@pytest.mark.parametrize(
    ("time_ms", "expected"),
    [(0, 0), (59_999, 0), (60_000, 60_000), (1_700_000_012_345, 1_699_999_980_000)],
)
def test_window_start_is_the_minute_boundary(time_ms: int, expected: int) -> None:
    assert window_start(time_ms) == expected


def test_vwap_rounds_ties_to_even_once() -> None:
    # 0.000000125 / 1 sits exactly between ...12 and ...13 at 8 places: ties go to the even digit.
    assert vwap(Decimal("0.000000125"), Decimal(1)) == Decimal("0.00000012")
    assert vwap(Decimal("0.000000135"), Decimal(1)) == Decimal("0.00000014")
    # 2/3 must not be rounded twice (0.666666666... -> 0.66666667).
    assert vwap(Decimal(2), Decimal(3)) == Decimal("0.66666667")


def test_window_stats_follow_trade_time_then_id_for_open_and_close() -> None:
    trades = [
        trade(12, "101.00000000", "0.50000000", 1_000),
        trade(10, "100.00000000", "1.00000000", 1_000),  # same time, lower id: the open
        trade(11, "99.50000000", "2.00000000", 30_000),
        trade(13, "102.25000000", "0.25000000", 59_999),  # the close
    ]
    stats = aggregate_window(reversed(trades))
    assert (stats.open, stats.close) == (Decimal("100.00000000"), Decimal("102.25000000"))
    assert (stats.high, stats.low) == (Decimal("102.25000000"), Decimal("99.50000000"))
    assert stats.base_volume == Decimal("3.75000000")
    assert stats.quote_volume == Decimal("375.0625")  # 100 + 50.5 + 199 + 25.5625
    assert stats.trade_count == 4
    assert (stats.first_trade_id, stats.last_trade_id) == (10, 13)
    assert stats.last_trade_time == 59_999
    assert (stats.window_start, stats.window_end) == (0, WINDOW_MS)


def test_window_rejects_trades_from_two_windows() -> None:
    with pytest.raises(ValueError):
        aggregate_window([trade(1, "1", "1", 0), trade(2, "1", "1", WINDOW_MS)])


def test_aggregate_all_matches_exact_rational_vwap_on_random_trades() -> None:
    rng = random.Random(20261124)
    trades = [
        trade(
            i,
            f"{rng.randint(5_000_000, 10_000_000) / 100:.8f}",
            f"{Decimal(rng.randint(1, 500_000_000)).scaleb(-8):.8f}",
            1_700_000_000_000 + rng.randint(0, 5 * WINDOW_MS),
            rng.choice(["BTCUSDT", "ETHUSDT"]),
        )
        for i in range(3_000)
    ]
    stats = aggregate_all(trades)
    groups: dict[str, list[Trade]] = {}
    for t in trades:
        groups.setdefault(f"{t.symbol}|{t.trade_time - t.trade_time % WINDOW_MS}", []).append(t)
    assert stats.keys() == groups.keys()
    for key, group in groups.items():
        notional = sum(Fraction(t.price) * Fraction(t.qty) for t in group)
        volume = sum(Fraction(t.qty) for t in group)
        assert stats[key].vwap == half_even_8(notional / volume), key
        assert Fraction(stats[key].quote_volume) == notional
        assert stats[key].trade_count == len(group)
