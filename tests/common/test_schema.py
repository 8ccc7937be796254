"""Wire format: round trips keep every decimal digit; bad records fail with a reason."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from app.common.schema import RecordError, Trade, WindowStats
from app.common.settings import Settings

GOOD = {
    "trade_id": 7,
    "symbol": "BTCUSDT",
    "price": "67012.34000000",
    "qty": "0.00012000",
    "quote_qty": "8.04148080",
    "trade_time": 1_700_000_000_123,
    "is_buyer_maker": True,
    "ingest_time": 1_700_000_000_200,
}


def test_trade_round_trip_keeps_decimal_text() -> None:
    parsed = Trade.from_json(json.dumps(GOOD))
    assert parsed.price == Decimal("67012.34000000")
    assert json.loads(parsed.to_json()) == GOOD


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"price": 67012.34}, "price must be a decimal string"),
        ({"price": "-1.0"}, "price is not a decimal"),
        ({"price": "0.00000000"}, "price must be positive"),
        ({"qty": "1.000000001"}, "qty is not a decimal with at most 8 places"),
        ({"trade_id": "7"}, "trade_id must be an integer"),
        ({"symbol": ""}, "symbol missing"),
        ({"trade_time": None}, "trade_time must be an integer"),
        ({"is_buyer_maker": "yes"}, "is_buyer_maker must be a boolean"),
        ({"price": "1.5\n"}, "price is not a decimal"),
        ({"quote_qty": "lots"}, "quote_qty is not a decimal"),
    ],
)
def test_bad_trades_name_their_fault(change: dict[str, object], reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        Trade.from_json(json.dumps(GOOD | change))


@pytest.mark.parametrize("raw", [b"not json", b"[1,2]", b"\xff\xfe", None])
def test_non_objects_are_record_errors(raw: bytes) -> None:
    with pytest.raises(RecordError):
        Trade.from_json(raw)


def test_window_stats_round_trip() -> None:
    stats = WindowStats(
        "BTCUSDT",
        0,
        60_000,
        Decimal("1.00000000"),
        Decimal("2.00000000"),
        Decimal("0.50000000"),
        Decimal("1.50000000"),
        Decimal("1.23456789"),
        Decimal("3.00000000"),
        Decimal("3.7037036700000000"),
        3,
        1,
        3,
        59_000,
        True,
    )
    assert WindowStats.from_json(stats.to_json()) == stats
    assert stats.key == "BTCUSDT|0"


def test_settings_from_env_and_flags() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    args = parser.parse_args(["--shuffle-partitions", "4"])
    settings = Settings.from_args(
        args, {"TELEMETRY_SYMBOLS": "btcusdt,ethusdt", "TELEMETRY_SHUFFLE_PARTITIONS": "8"}
    )
    assert settings.symbols == ("BTCUSDT", "ETHUSDT")
    assert settings.shuffle_partitions == 4  # the flag wins over the environment


def test_settings_reject_bad_numbers() -> None:
    with pytest.raises(SystemExit, match="TELEMETRY_SHUFFLE_PARTITIONS"):
        Settings.from_env({"TELEMETRY_SHUFFLE_PARTITIONS": "many"})
