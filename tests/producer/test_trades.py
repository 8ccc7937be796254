"""Parsing and validating Binance trades (REST JSON, public-data CSV) and gap detection."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from app.common.schema import MAX_TRADE_TIME_MS, RecordError, Trade
from app.producer.trades import (
    classify_poll,
    releasable,
    release_horizon_ms,
    take_releasable,
    time_to_ms,
    trade_from_binance,
    trade_from_csv,
    trades_from_body,
)

DOC_EXAMPLE = {
    "id": 28457,
    "price": "4.00000100",
    "qty": "12.00000000",
    "quoteQty": "48.000012",
    "time": 1499865549590,
    "isBuyerMaker": True,
    "isBestMatch": True,
}


def test_binance_json_trade_keeps_every_decimal() -> None:
    trade = trade_from_binance(DOC_EXAMPLE, "BTCUSDT", ingest_time=1499865550000)
    assert trade == Trade(
        trade_id=28457,
        symbol="BTCUSDT",
        price=Decimal("4.00000100"),
        qty=Decimal("12.00000000"),
        quote_qty=Decimal("48.000012"),
        trade_time=1499865549590,
        is_buyer_maker=True,
        ingest_time=1499865550000,
    )
    # The wire format carries the strings unchanged: no float anywhere.
    assert json.loads(trade.to_json())["price"] == "4.00000100"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"price": 4.000001}, "price must be a decimal string"),
        ({"qty": "-1"}, "qty is not a decimal"),
        ({"price": "0.00000000"}, "price must be positive"),
        ({"id": "28457"}, 'trade_id must be an integer, got "28457"'),
        ({"id": -1}, "trade_id must be >= 0, got -1"),
        ({"time": None}, "trade_time must be an integer, got null"),
        ({"time": 0}, "trade_time must be >= 1, got 0"),
        ({"time": MAX_TRADE_TIME_MS}, f"trade_time out of range, got {MAX_TRADE_TIME_MS}"),
        ({"isBuyerMaker": "true"}, "is_buyer_maker must be a boolean"),
        ({"quoteQty": "1e5"}, "quote_qty is not a decimal"),
        ({"quoteQty": 48.000012}, "quote_qty must be a decimal string, got 48.000012"),
    ],
)
def test_bad_json_trades_are_rejected_with_the_reason(change: dict[str, object], reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        trade_from_binance(DOC_EXAMPLE | change, "BTCUSDT", 0)


def test_body_must_be_an_ascending_json_array() -> None:
    second = DOC_EXAMPLE | {"id": 28458}
    trades = trades_from_body(json.dumps([DOC_EXAMPLE, second]).encode(), "BTCUSDT", 0)
    assert [t.trade_id for t in trades] == [28457, 28458]
    with pytest.raises(RecordError, match="not ascending"):
        trades_from_body(json.dumps([second, DOC_EXAMPLE]).encode(), "BTCUSDT", 0)
    with pytest.raises(RecordError, match="not JSON"):
        trades_from_body(b'[{"id": 1,', "BTCUSDT", 0)
    with pytest.raises(RecordError, match="not a JSON array"):
        trades_from_body(b'{"code": -1121, "msg": "Invalid symbol."}', "BTCUSDT", 0)


def test_csv_rows_in_milliseconds_and_microseconds_give_the_same_trade() -> None:
    ms_row = ["28457", "4.00000100", "12.00000000", "48.000012", "1499865549590", "True", "True"]
    us_row = [*ms_row[:4], "1499865549590123", *ms_row[5:]]
    ms_trade = trade_from_csv(ms_row, "BTCUSDT")
    assert ms_trade == trade_from_csv(us_row, "BTCUSDT")
    assert ms_trade.trade_time == 1499865549590
    assert ms_trade.price == Decimal("4.00000100")
    assert trade_from_csv([*ms_row[:5], "False", "True"], "BTCUSDT").is_buyer_maker is False


def test_time_units_boundary() -> None:
    assert time_to_ms(1_736_942_400_000) == 1_736_942_400_000  # 2025 in ms
    assert time_to_ms(1_736_942_400_000_999) == 1_736_942_400_000  # 2025 in us


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (["1", "2.0", "3.0", "6.0", "1499865549590", "True"], "expected 7 columns"),
        (["x", "2.0", "3.0", "6.0", "1499865549590", "True", "True"], "must be integers"),
        (["1", "2,5", "3.0", "6.0", "1499865549590", "True", "True"], "price is not a decimal"),
        (["1", "2.0", "3.0", "6.0", "1499865549590", "yes", "True"], "is_buyer_maker must be True or False"),
        (["-1", "2.0", "3.0", "6.0", "1499865549590", "True", "True"], "trade_id must be >= 0"),
        (["1", "2.0", "3.0", "6.0", "0", "True", "True"], "trade_time must be >= 1"),
        (["1", "2.0", "3.0", "6,0", "1499865549590", "True", "True"], "quote_qty is not a decimal"),
    ],
)
def test_bad_csv_rows_are_rejected_with_the_reason(row: list[str], reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        trade_from_csv(row, "BTCUSDT")


def _trades(*ids: int) -> list[Trade]:
    return [
        Trade(i, "BTCUSDT", Decimal("1"), Decimal("1"), Decimal("1"), 1_700_000_000_000 + i, False)
        for i in ids
    ]


def test_fresh_start_takes_the_latest_page_as_is() -> None:
    outcome = classify_poll(None, _trades(500, 501, 502))
    assert [t.trade_id for t in outcome.new] == [500, 501, 502]
    assert outcome.missing_from is None


def test_overlap_gives_only_new_trades() -> None:
    outcome = classify_poll(501, _trades(500, 501, 502, 503))
    assert [t.trade_id for t in outcome.new] == [502, 503]
    assert classify_poll(503, _trades(500, 501, 502, 503)).new == []
    assert classify_poll(503, []).new == []


def test_continuous_page_starting_right_after_last_is_not_a_gap() -> None:
    outcome = classify_poll(499, _trades(500, 501))
    assert [t.trade_id for t in outcome.new] == [500, 501]
    assert outcome.missing_from is None


def test_gap_reports_the_missing_range_and_publishes_nothing_newer() -> None:
    outcome = classify_poll(100, _trades(500, 501))
    assert outcome.new == []
    assert (outcome.missing_from, outcome.missing_to) == (101, 499)


def _trade_at(trade_id: int, time_ms: int) -> Trade:
    return Trade(trade_id, "BTCUSDT", Decimal("1"), Decimal("1"), Decimal("1"), time_ms, False)


def test_the_release_horizon_is_the_least_advanced_symbol_plus_the_lead() -> None:
    assert release_horizon_ms([10_000, None, 4_000], lead_ms=5_000) == 9_000
    assert release_horizon_ms([None, None], lead_ms=5_000) is None


def test_only_the_prefix_up_to_the_horizon_is_released_so_ids_stay_in_order() -> None:
    pending = [_trade_at(1, 100), _trade_at(2, 300), _trade_at(3, 150)]
    assert releasable(pending, 200) == 1
    assert releasable(pending, 99) == 0
    assert releasable(pending, 300) == 3
    assert releasable(pending, None) == 3


def test_one_symbols_releasable_prefix_is_taken_out_and_the_rest_waits() -> None:
    held_back, first, second = [_trade_at(1, 500)], [_trade_at(7, 100), _trade_at(8, 300)], [_trade_at(4, 50)]
    assert take_releasable([held_back, first, second], 200) == [_trade_at(7, 100)]
    assert (held_back, first, second) == ([_trade_at(1, 500)], [_trade_at(8, 300)], [_trade_at(4, 50)])
    assert take_releasable([held_back, first, second], 200) == [_trade_at(4, 50)]
    assert take_releasable([held_back, first, second], 200) == []
    assert second == []
