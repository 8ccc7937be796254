"""The exact-arithmetic building blocks on batch DataFrames, against Python's Fraction and Decimal."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType, StructField, StructType

from app.common.schema import metric_from_json
from app.common.settings import Settings
from app.processing import transform
from app.processing.job import kafka_source
from app.processing.metrics import METRICS_KEY, progress_metric

UNITS = DecimalType(38, 0)


def half_even(numerator: int, denominator: int) -> int:
    whole, rest = divmod(numerator, denominator)
    if 2 * rest > denominator or (2 * rest == denominator and whole % 2 == 1):
        whole += 1
    return whole


def quotient_cases() -> list[tuple[int, int]]:
    rng = random.Random(7)
    cases: list[tuple[int, int]] = []
    for _ in range(150):
        d = rng.randrange(1, 10 ** rng.randrange(1, 24))
        q = rng.randrange(1, 10 ** rng.randrange(1, 28))
        cases.append((q * d + rng.randrange(0, d), d))
    for q in (100_000_001, 100_000_002, 10**27 + 1, 10**27 + 2):  # exact ties, odd and even below
        cases.append((q * 2 + 1, 2))
        cases.append((q * 10**9 + 5 * 10**8, 10**9))
    for f in (1, 6_700_012_345_678, 10**27):  # just below an integer: 6-place rounding goes above
        d = 10**12
        cases.append((f * d + d - 1, d))
        cases.append((f * d + 1, d))
    return [(n, d) for n, d in cases if n < 10**38]


def test_exact_quotient_half_even_matches_fraction(spark: SparkSession) -> None:
    cases = quotient_cases()
    frame = spark.createDataFrame(
        [(Decimal(n), Decimal(d)) for n, d in cases],
        StructType([StructField("n", UNITS), StructField("d", UNITS)]),
    )
    result = frame.select("n", "d", transform.exact_quotient_half_even(F.col("n"), F.col("d")).alias("q"))
    assert result.schema["q"].dataType == UNITS
    got = {(int(r.n), int(r.d)): int(r.q) for r in result.collect()}
    assert len(got) == len(set(cases))
    for n, d in cases:
        assert got[(n, d)] == half_even(n, d), (n, d, Fraction(n, d))


def test_format_units_is_plain_and_exact(spark: SparkSession) -> None:
    values = [1, 99, 10**8, 123_456_789, 6_700_001_000_000, 10**37 + 3]
    frame = spark.createDataFrame([(Decimal(v),) for v in values], StructType([StructField("u", UNITS)]))
    rows = frame.select(
        "u",
        transform.format_units(F.col("u"), 8).alias("p8"),
        transform.format_units(F.col("u"), 16).alias("p16"),
    ).collect()
    for row in rows:
        units = int(row.u)
        assert row.p8 == f"{units // 10**8}.{units % 10**8:08d}"
        assert row.p16 == f"{units // 10**16}.{units % 10**16:016d}"


def test_price_strings_become_exact_units(spark: SparkSession) -> None:
    prices = ["1", "0.1", "00012.5", "67000.01000000", "0.00000001", "99999999999.99999999"]
    trades = [
        (
            f'{{"trade_id":{i},"symbol":"X","price":"{p}","qty":"1","quote_qty":"1",'
            '"trade_time":1,"is_buyer_maker":true}',
            i,
        )
        for i, p in enumerate(prices)
    ]
    raw = spark.createDataFrame(trades, "value string, offset long").select(
        F.lit(None).cast("binary").alias("key"),
        F.col("value").cast("binary").alias("value"),
        F.lit("raw").alias("topic"),
        F.lit(0).alias("partition"),
        "offset",
    )
    valid, invalid = transform.split_valid(transform.parse_trades(raw))
    assert invalid.count() == 0
    got = {r.trade_id: int(r.price_units) for r in valid.collect()}
    assert got == {i: int(Decimal(p) * 10**8) for i, p in enumerate(prices)}


def test_aggregation_plan_keeps_every_sum_an_exact_integer(spark: SparkSession) -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9", raw_topic="plan_only")
    valid, _ = transform.split_valid(transform.parse_trades(kafka_source(spark, settings)))
    schema = transform.aggregate_windows(valid, "10 seconds").schema
    for name in ("open_units", "high_units", "low_units", "close_units"):
        assert schema[name].dataType == DecimalType(28, 0)
    for name in ("base_units", "notional_units", "vwap_units"):
        assert schema[name].dataType == DecimalType(38, 0), name


def test_progress_metric_sums_late_rows_and_reads_the_watermark() -> None:
    progress = {
        "name": "live",
        "batchId": 7,
        "timestamp": "2026-01-01T00:00:05.250Z",
        "numInputRows": 40,
        "inputRowsPerSecond": 80.0,
        "processedRowsPerSecond": 50.5,
        "batchDuration": 792,
        "eventTime": {"watermark": "2026-01-01T00:00:00.000Z"},
        "stateOperators": [{"numRowsDroppedByWatermark": 2}, {"numRowsDroppedByWatermark": 1}],
    }
    metric = progress_metric(progress)
    assert metric.late_rows_dropped == 3
    assert metric.watermark == 1_767_225_600_000
    assert metric.time == 1_767_225_605_250
    assert (metric.query, metric.batch_id, metric.batch_duration_ms) == ("live", 7, 792)
    before_any_event = {**progress, "eventTime": {"watermark": "1970-01-01T00:00:00.000Z"}}
    assert progress_metric(before_any_event).watermark is None
    # What the listener publishes is what the dashboard and the checks decode.
    assert metric_from_json(METRICS_KEY, metric.to_json()) == metric
