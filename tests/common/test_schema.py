"""Wire format: round trips keep every decimal digit; bad records fail with a reason."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from app.common.schema import (
    MAX_TRADE_TIME_MS,
    DeadLetter,
    FieldDifference,
    LateTrade,
    ProducerMetric,
    ReconcileMetric,
    ReconcileStatus,
    Reconciliation,
    RecordError,
    SparkLedger,
    SparkMetric,
    Trade,
    WindowStats,
    field_value,
    metric_from_json,
)
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
        ({"trade_time": 253_402_300_800_000}, "trade_time out of range, got 253402300800000"),
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


def test_producer_metric_keeps_the_layout_the_dashboard_has_always_read() -> None:
    metric = ProducerMetric(time=5, trades_published=3, http_errors={"5xx": 1}, budget_per_minute=3000)
    assert list(json.loads(metric.to_json())) == [
        "source", "time", "trades_published", "polls", "gaps_backfilled", "unrecoverable_gaps",
        "http_errors", "rate_limited_429", "banned_418", "used_weight_1m", "budget_per_minute",
        "producer_rebuilds", "stream_connects", "stream_malformed_frames", "stream_unknown_symbol_frames",
        "stream_out_of_order_frames",
    ]  # fmt: skip
    assert metric_from_json(b"producer", metric.to_json()) == metric


def test_spark_metric_round_trip_by_source_or_key() -> None:
    metric = SparkMetric("ledger", 7, 1_000, 40, None, 80.0, 50.5, 792, 12)
    assert json.loads(metric.to_json())["source"] == "spark"
    assert metric_from_json(None, metric.to_json()) == metric
    without_source = {k: v for k, v in json.loads(metric.to_json()).items() if k != "source"}
    assert metric_from_json(b"spark", json.dumps(without_source)) == metric
    assert metric_from_json(b"spark", json.dumps({"source": "elsewhere"})) is None


def test_spark_ledger_and_late_trade_round_trip() -> None:
    ledger = SparkLedger("BTCUSDT", 1_000, 10, 5, 1, 1, 2, "0.5", "33.25", 1, 0, 1)
    assert ledger.accounted == 5 + 2 + 1 + 1
    assert metric_from_json(ledger.key, ledger.to_json()) == ledger
    late = LateTrade("BTCUSDT", 42, 0, 60_000, 61_000, "raw", 1, 7, '{"trade_id":42}')
    assert LateTrade.from_json(late.to_json()) == late
    assert late.key == "BTCUSDT|42"


def test_metric_decoding_takes_defaults_for_missing_fields() -> None:
    assert metric_from_json(b"producer", b"{}") == ProducerMetric()
    assert metric_from_json(None, b'{"source":"spark","query":"final","batch_id":2}') == SparkMetric(
        query="final", batch_id=2
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "metric is not JSON"),
        (b"[1]", "metric is not a JSON object"),
        (b'{"source":"producer","trades_published":"5"}', "trades_published must be an integer"),
        (b'{"source":"producer","polls":true}', "polls must be an integer"),
        (b'{"source":"producer","http_errors":[1]}', "http_errors must be an object of counts"),
        (b'{"source":"producer","http_errors":{"5xx":1.5}}', "http_errors.5xx must be an integer"),
        (b'{"source":"spark","watermark":"soon"}', "watermark must be an integer"),
        (b'{"source":"spark","query":7}', "query must be a string"),
        (b'{"source":"spark","input_rows_per_second":"fast"}', "input_rows_per_second must be a number"),
    ],
)
def test_metric_decoding_rejects_garbage_with_the_field(raw: bytes, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        metric_from_json(None, raw)


def test_dead_letter_round_trip_and_required_fields() -> None:
    letter = DeadLetter("not JSON", "raw", 0, 12, "this is not json \u00e9")
    layout = '{"reason":"not JSON","topic":"raw","partition":0,"offset":12,"value":"this is not json \u00e9"}'
    assert letter.to_json() == layout.encode()
    assert DeadLetter.from_json(letter.to_json()) == letter
    with pytest.raises(RecordError, match="offset missing"):
        DeadLetter.from_json(b'{"reason":"x","topic":"raw","partition":0,"value":""}')


def test_field_checks_give_the_reasons_of_the_whole_record() -> None:
    assert field_value("trade_time", MAX_TRADE_TIME_MS - 1) == MAX_TRADE_TIME_MS - 1
    bad = [("trade_time", MAX_TRADE_TIME_MS), ("price", "0"), ("quote_qty", 8.04), ("trade_id", -1)]
    for name, value in bad:
        with pytest.raises(RecordError) as from_field:
            field_value(name, value)
        with pytest.raises(RecordError) as from_record:
            Trade.from_json(json.dumps(GOOD | {name: value}))
        assert str(from_field.value) == str(from_record.value)


def test_a_reconciliation_round_trips_with_exact_values_and_refuses_an_unknown_status() -> None:
    mismatch = Reconciliation(
        "BTCUSDT",
        1_781_505_540_000,
        ReconcileStatus.MISMATCHED,
        (FieldDifference("quote_volume", Decimal("2764.48648080"), Decimal("2764.4864808000000000001")),),
        checked_at=5,
    )
    unavailable = Reconciliation("ETHUSDT", 60_000, ReconcileStatus.UNAVAILABLE, reason="HTTP 500")
    for record in (mismatch, unavailable):
        assert Reconciliation.from_json(record.to_json()) == record
    assert mismatch.differences[0].difference == Decimal("-1E-19")
    assert json.loads(mismatch.to_json())["differences"][0]["pipeline"] == "2764.48648080"
    payload = json.loads(unavailable.to_json()) | {"status": "fine"}
    with pytest.raises(RecordError):
        Reconciliation.from_json(json.dumps(payload))


def test_the_reconcilers_metric_is_read_by_its_source() -> None:
    metric = ReconcileMetric(
        time=7, kline_requests=3, weight_spent=6, klines_missing=1, budget_per_minute=3000
    )
    assert metric_from_json(None, metric.to_json()) == metric
