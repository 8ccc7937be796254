"""The kline parser and the comparison, pure: every field exactly, the VWAP at 8 places."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from app.common.schema import FieldDifference, ReconcileStatus, Reconciliation, WindowStats
from app.core.windows import aggregate_all
from app.producer.trades import trade_from_binance
from app.reconcile.klines import Kline, KlineError, parse_answer, reconcile
from tests.support.recorded import KLINES_FILE, SYMBOL, complete_minute_klines, recorded_trades

ROW = [
    1781505540000,
    "65805.99000000",
    "65806.00000000",
    "65804.00000000",
    "65804.00000000",
    "0.04201000",
    1781505599999,
    "2764.48648080",
    21,
    "0.01336000",
    "879.16804070",
    "0",
]


def recorded_windows() -> dict[int, WindowStats]:
    trades = [trade_from_binance(t, SYMBOL, 0) for t in recorded_trades()]
    return {w.window_start: w for w in aggregate_all(trades).values()}


def test_every_recorded_complete_minute_matches_its_kline() -> None:
    windows = recorded_windows()
    results = [reconcile(windows[k.open_time], k, now_ms=7) for k in complete_minute_klines()]
    assert len(results) == 14
    assert all(r.status is ReconcileStatus.MATCHED and r.differences == () for r in results)


@pytest.mark.parametrize(
    ("index", "text", "field"),
    [
        (1, "65805.99000001", "open"),
        (2, "65806.01000000", "high"),
        (3, "65803.99000000", "low"),
        (4, "65804.01000000", "close"),
        (7, "2764.48648081", "quote_volume"),
    ],
)
def test_one_field_off_by_a_unit_is_named_with_its_exact_difference(
    index: int, text: str, field: str
) -> None:
    window = recorded_windows()[ROW[0]]
    good = Kline.from_api(ROW)
    kline = Kline.from_api([*ROW[:index], text, *ROW[index + 1 :]])
    result = reconcile(window, kline, now_ms=7)
    expected = [FieldDifference(field, Decimal(ROW[index]), Decimal(text))]
    if field == "quote_volume":  # the VWAP is quote volume / volume: 65804.00019999... vs ...2023...
        assert reconcile(window, good, 7).status is ReconcileStatus.MATCHED
    assert [d for d in result.differences if d.field != "vwap"] == expected
    assert result.status is ReconcileStatus.MISMATCHED


def test_volume_and_count_differences_also_move_the_vwap() -> None:
    window = recorded_windows()[ROW[0]]
    kline = Kline.from_api([*ROW[:5], "0.04202000", *ROW[6:8], 22, *ROW[9:]])
    result = reconcile(window, kline, now_ms=7)
    assert [d.field for d in result.differences] == ["base_volume", "trade_count", "vwap"]
    assert result.differences[0].difference == Decimal("-0.00001")
    assert result.differences[1].difference == -1
    assert Reconciliation.from_json(result.to_json()) == result


@pytest.mark.parametrize(
    "row",
    [
        [*ROW[:4], 65804.0, *ROW[5:]],  # a float, never money
        [*ROW[:4], "6.58E+4", *ROW[5:]],
        ROW[:8],  # too short
        [*ROW[:6], ROW[6] + 1, *ROW[7:]],  # not a 1-minute close time
        [*ROW[:8], "21", *ROW[9:]],  # a count as text
        [*ROW[:8], True, *ROW[9:]],
    ],
)
def test_a_malformed_row_is_refused(row: list[object]) -> None:
    with pytest.raises(KlineError):
        Kline.from_api(row)


def test_an_answer_keeps_bad_rows_apart_by_open_time_and_refuses_what_is_not_klines() -> None:
    bad = [*ROW[:4], 65804.0, *ROW[5:]]
    other = [ROW[0] + 60_000, *ROW[1:6], ROW[6] + 60_000, *ROW[7:]]
    answer = parse_answer(json.dumps([bad, other]).encode())
    assert list(answer.klines) == [other[0]] and list(answer.malformed) == [ROW[0]]
    for body in (b'{"code": -1000}', b"<html>", b'[["x"]]'):
        with pytest.raises(KlineError):
            parse_answer(body)


def test_the_recorded_file_parses_whole() -> None:
    answer = parse_answer(KLINES_FILE.read_bytes())
    assert len(answer.klines) == 16 and answer.malformed == {}
    assert answer.klines[ROW[0]] == Kline.from_api(ROW)
