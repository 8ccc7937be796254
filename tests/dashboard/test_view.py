"""Pure view computations: exact Decimal KPIs, bps, the chart frame, and their cost at 24 h of data."""

from __future__ import annotations

import time
import tomllib
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from app.common.schema import FieldDifference, ReconcileStatus, Reconciliation, WindowStats
from app.core.windows import WINDOW_MS
from app.dashboard import view
from app.dashboard.charts import DATASET, MAX_TIME_TICKS, chart_specs, time_ticks
from app.dashboard.state import ReconciliationSummary
from tests.dashboard.helpers import final, window

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a minute boundary


@pytest.mark.parametrize(
    ("price", "vwap", "expected"),
    [
        ("100.50", "100.00000000", "50.00"),
        ("99.50", "100.00000000", "-50.00"),
        ("67012.34", "67000.00000000", "1.84"),  # 12.34 / 67000 * 1e4 = 1.84179...
        ("100.00005", "100.00000000", "0.00"),  # exactly 0.005 bp: half to even rounds down
        ("100.00015", "100.00000000", "0.02"),  # exactly 0.015 bp: half to even rounds up
        ("64999.99", "65000.00000001", "-0.00"),
    ],
)
def test_price_vs_vwap_bps(price: str, vwap: str, expected: str) -> None:
    result = view.price_vs_vwap_bps(Decimal(price), Decimal(vwap))
    assert str(result) == expected
    exact = (Fraction(price) - Fraction(vwap)) / Fraction(vwap) * 10_000
    assert abs(Fraction(result) - exact) <= Fraction(1, 200)


def test_price_vs_vwap_rejects_a_non_positive_vwap() -> None:
    with pytest.raises(ValueError, match="VWAP must be positive"):
        view.price_vs_vwap_bps(Decimal("1"), Decimal("0"))


def test_kpis_of_the_newest_window() -> None:
    previous = final(window(T0, ["100.00"] * 90, first_id=1))
    newest = window(T0 + WINDOW_MS, ["100.00", "102.00"], ["1", "3"], first_id=100)
    now = T0 + WINDOW_MS + 20_000

    figures = view.kpis([previous, newest], now)

    assert figures is not None
    assert figures.window_start == T0 + WINDOW_MS
    assert figures.is_final is False
    assert figures.last_price == Decimal("102.00")
    # (100*1 + 102*3) / 4 = 101.5, as the reference aggregation computed it
    assert figures.vwap == Decimal("101.50000000")
    # (102 - 101.5) / 101.5 * 1e4 = 49.2610837...
    assert figures.price_vs_vwap_bps == Decimal("49.26")
    assert figures.trades_per_s == Decimal("1.50")  # 90 trades in the last completed minute


@pytest.mark.parametrize(("count", "expected"), [(1, "0.02"), (3, "0.05"), (61, "1.02"), (3000, "50.00")])
def test_trades_per_second_over_the_last_completed_minute(count: int, expected: str) -> None:
    completed = window(T0, ["1.00"] * count)
    assert view.trades_per_second([completed], T0 + WINDOW_MS + 5_000) == Decimal(expected)


def test_trades_per_second_is_zero_without_a_window_for_the_last_minute() -> None:
    old = window(T0, ["1.00"] * 30)
    assert view.trades_per_second([old], T0 + 5 * WINDOW_MS) == Decimal("0.00")
    # The open window's trades do not count: its minute is not over.
    assert view.trades_per_second([old], T0 + 30_000) == Decimal("0.00")


def test_no_windows_no_figures() -> None:
    assert view.kpis([], T0) is None
    assert view.freshness_s([], T0) is None
    assert view.format_age(None) == "n/a"
    assert view.candles_frame([]).empty


def test_freshness_is_now_minus_the_last_trade_time() -> None:
    row = window(T0, ["1.00", "1.00", "1.00"])  # trades at T0+1s, +2s, +3s
    assert view.freshness_s([row], T0 + 3_000 + 1_250) == Decimal("1.2")  # 1.25 s, half to even
    assert view.format_age(Decimal("4.5")) == "4.5 s"
    assert view.format_age(Decimal("600")) == "10.0 min"
    assert view.format_age(Decimal("9000")) == "2.5 h"


def test_recent_counts_back_from_the_newest_window_across_gaps() -> None:
    rows = [window(T0 + i * WINDOW_MS, ["1.00"]) for i in (0, 1, 5, 6, 9)]
    assert view.recent(rows, 4) == rows[3:]  # minutes 6..9
    assert view.recent(rows, 5) == rows[2:]  # minutes 5..9
    assert view.recent(rows, 1000) == rows
    assert view.recent([], 30) == []


def test_candles_frame_keeps_exact_text_beside_plotting_floats() -> None:
    up = window(T0, ["67000.01", "67010.50", "66990.00", "67005.12345678"], ["0.001", "0.25", "1", "0.5"])
    down = final(window(T0 + WINDOW_MS, ["67005.00", "67001.00"], first_id=50))

    frame = view.candles_frame([up, down])

    assert list(frame.columns) == list(view.CANDLE_COLUMNS)
    assert list(frame["time"].astype("int64") // 1_000_000) == [T0, T0 + WINDOW_MS]
    assert list(frame["rising"]) == [True, False]
    assert list(frame["final"]) == [False, True]
    assert list(frame["trades"]) == [4, 2]
    assert frame["close"].iloc[0] == float(Decimal("67005.12345678"))
    assert frame["high"].iloc[0] == 67010.5
    assert frame["low"].iloc[0] == 66990.0
    assert frame["ohlc"].iloc[0] == "67,000.01 / 67,010.50 / 66,990.00 / 67,005.12345678"
    # Σ(p·q)/Σq = 118_278.2623283900 / 1.751 = 67549.0932... computed by the reference implementation
    assert frame["vwap_text"].iloc[0] == str(up.vwap)
    assert frame["volume_text"].iloc[0] == "1.751"
    assert frame["vwap_text"].iloc[1] == "67003.00000000"


def test_format_price() -> None:
    assert view.format_price(Decimal("67000.01000000")) == "67,000.01"
    assert view.format_price(Decimal("67000")) == "67,000.00"
    assert view.format_price(Decimal("0.12345678")) == "0.12345678"
    assert view.format_bps(Decimal("1.84")) == "+1.84 bps"
    assert view.format_bps(Decimal("-0.50")) == "-0.50 bps"


def day_of_windows(symbol: str = "BTCUSDT") -> list[WindowStats]:
    base = Decimal("67000.00")
    rows = []
    for i in range(1440):
        p = base + Decimal(i % 97) - Decimal(i % 31)
        rows.append(
            WindowStats(
                symbol=symbol,
                window_start=T0 + i * WINDOW_MS,
                window_end=T0 + (i + 1) * WINDOW_MS,
                open=p,
                high=p + Decimal("12.5"),
                low=p - Decimal("7.25"),
                close=p + Decimal("3.10"),
                vwap=p + Decimal("1.23456789"),
                base_volume=Decimal("12.34567"),
                quote_volume=Decimal("827160.00"),
                trade_count=600 + i % 50,
                first_trade_id=i * 1000,
                last_trade_id=i * 1000 + 599,
                last_trade_time=T0 + i * WINDOW_MS + 59_000,
                is_final=i < 1439,
            )
        )
    return rows


def test_a_day_of_windows_is_computed_and_charted_within_budget() -> None:
    rows = day_of_windows()
    now = rows[-1].window_start + 30_000
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        view.kpis(rows, now)
        view.freshness_s(rows, now)
        frame = view.candles_frame(view.recent(rows, 1440))
        price, volume = chart_specs("BTCUSDT", frame)
        timings.append(time.perf_counter() - started)
    assert len(frame) == 1440
    assert price["layer"]
    assert volume["mark"]["type"] == "bar"
    best_ms = min(timings) * 1000
    print(f"pure view + chart spec for 1440 windows: best {best_ms:.1f} ms of {len(timings)}")
    assert best_ms < 100


def test_chart_specs_draw_candles_vwap_and_volume_from_the_frame_columns() -> None:
    frame = view.candles_frame([window(T0 + i * WINDOW_MS, ["1.00"]) for i in range(120)])
    price, volume = chart_specs("BTCUSDT", frame)
    for spec in (price, volume):
        assert spec["data"] == {"name": DATASET}
        assert spec["datasets"][DATASET] is frame
    assert [layer["mark"]["type"] for layer in price["layer"]] == ["rule", "bar", "line"]
    assert volume["mark"]["type"] == "bar"
    fields = {
        channel["field"]
        for part in [*price["layer"], volume]
        for channel in part["encoding"].values()
        if isinstance(channel, dict) and "field" in channel
    }
    assert fields <= set(frame.columns)
    assert {"low", "high", "open", "close", "vwap", "volume"} <= fields
    assert price["layer"][1]["mark"]["size"] == 6.4  # 0.7 * 1100 px / 120 candles
    # Callers get their own copy: Streamlit may add keys to it.
    price["autosize"] = "fit"
    assert "autosize" not in chart_specs("BTCUSDT", frame)[0]


def test_shipped_streamlit_config_keeps_the_server_private() -> None:
    """Streamlit reads .streamlit/config.toml beside the script whatever the working directory."""
    path = Path(__file__).resolve().parents[2] / "app" / "dashboard" / ".streamlit" / "config.toml"
    config = tomllib.loads(path.read_text())
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"]["headless"] is True


@pytest.mark.parametrize("minutes", [1, 3, 12, 45, 91, 360, 1440, 3 * 1440, 30 * 1440])
def test_time_ticks_fall_on_whole_steps_with_one_label_each(minutes: int) -> None:
    start = T0 + 7 * WINDOW_MS  # not on an hour, so alignment is not free
    end = start + minutes * WINDOW_MS
    ticks = time_ticks(end - start)
    values = ticks.values(start, end)
    assert 1 <= len(values) < MAX_TIME_TICKS + 1
    assert all(start <= value <= end and value % ticks.step_ms == 0 for value in values)
    assert all(value % WINDOW_MS == 0 for value in values)
    labels = [
        datetime.fromtimestamp(value / 1000, tz=UTC).strftime(ticks.label_format.replace("%b", "%m"))
        for value in values
    ]
    assert len(set(labels)) == len(labels)


def test_both_charts_carry_the_same_whole_minute_ticks() -> None:
    frame = view.candles_frame([window(T0 + i * WINDOW_MS, ["1.00"]) for i in range(3)])
    price, volume = chart_specs("BTCUSDT", frame)
    axes = [layer["encoding"]["x"]["axis"] for layer in price["layer"]] + [volume["encoding"]["x"]["axis"]]
    expected = [
        {"utc": True, "year": 2026, "month": 1, "date": 1, "hours": 0, "minutes": m} for m in range(4)
    ]
    assert all(axis["values"] == expected for axis in axes)


def test_reconciliation_headline_and_mismatch_alarm_text() -> None:
    mismatch = Reconciliation(
        "BTCUSDT",
        T0 + 39 * WINDOW_MS,
        ReconcileStatus.MISMATCHED,
        (
            FieldDifference("close", Decimal("65804.00000000"), Decimal("65804.01000000")),
            FieldDifference("trade_count", Decimal(22), Decimal(21)),
        ),
    )
    summary = ReconciliationSummary(matched=1_313, checked=1_314, unavailable=0, mismatches=(mismatch,))
    assert view.reconciliation_headline(summary) == "1,313 of 1,314 minutes matched"
    assert view.reconciliation_headline(replace(summary, unavailable=2)) == (
        "1,313 of 1,314 minutes matched, 2 not checked"
    )
    assert view.mismatch_text(mismatch) == (
        "BTCUSDT 2026-01-01 00:39 UTC: close 65804 vs exchange 65804.01 (-0.01); "
        "trade_count 22 vs exchange 21 (+1)"
    )
