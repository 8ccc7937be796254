"""The job's parsing on batch DataFrames, and its progress metric."""

from __future__ import annotations

from decimal import Decimal

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from app.common.schema import metric_from_json
from app.processing import transform
from app.processing.metrics import METRICS_KEY, progress_metric


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
    parsed = transform.parse_trades(raw).collect()
    assert all(r.reason is None for r in parsed)
    # The digits without leading zeros: the notional rule counts them.
    got = {r.trade_id: r.price_units for r in parsed}
    assert got == {i: str(int(Decimal(p) * 10**8)) for i, p in enumerate(prices)}


def test_progress_metric_reads_the_watermark_and_state_rows() -> None:
    progress = {
        "name": "live",
        "batchId": 7,
        "timestamp": "2026-01-01T00:00:05.250Z",
        "numInputRows": 40,
        "inputRowsPerSecond": 80.0,
        "processedRowsPerSecond": 50.5,
        "batchDuration": 792,
        "eventTime": {"watermark": "2026-01-01T00:00:00.000Z"},
        "stateOperators": [{"numRowsTotal": 2}, {"numRowsTotal": 1}],
    }
    metric = progress_metric(progress)
    assert metric.state_rows == 3
    assert metric.watermark == 1_767_225_600_000
    assert metric.time == 1_767_225_605_250
    assert (metric.query, metric.batch_id, metric.batch_duration_ms) == ("live", 7, 792)
    before_any_event = {**progress, "eventTime": {"watermark": "1970-01-01T00:00:00.000Z"}}
    assert progress_metric(before_any_event).watermark is None
    # What the listener publishes is what the dashboard and the checks decode.
    assert metric_from_json(METRICS_KEY, metric.to_json()) == metric
