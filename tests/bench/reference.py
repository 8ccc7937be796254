"""`python -m tests.bench.reference noop|peer`: the two jobs the replay's throughput is measured
against, each run on the same raw topic with the job's own session (master, shuffle partitions,
trigger, maxOffsetsPerTrigger) and the job's progress listener, so all three are timed alike.

  noop  Spark's read ceiling: the job's Kafka source into `format("noop")`.
  peer  a windowed job as public Binance->Kafka->Spark pipelines write it: decimal strings cast to
        double, one windowed aggregation with a watermark, VWAP = sum(p*q)/sum(q) in floating
        point, update mode to the aggregates topic (JSON rows keyed `symbol|window_start`).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery

from app.common.kafka_security import confluent_config
from app.common.settings import Settings
from app.processing.job import StreamingJob, checkpoint_location, kafka_source
from app.processing.metrics import MetricsPublisher
from app.processing.session import build_session, stop_session

log = logging.getLogger("tests.bench.reference")

REFERENCES = ("noop", "peer")
# What such pipelines read from each trade: every amount as the exchange's decimal string.
PEER_SCHEMA = "symbol STRING, price STRING, qty STRING, trade_time LONG"
# Spark's default state store, as a peer job has it (the job needs RocksDB for its processor).
PEER_STATE_STORE = "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider"


def peer_windows(source: DataFrame, watermark: str) -> DataFrame:
    """Kafka source -> (key, value) rows of the peer job's windows, VWAP as a double."""
    trade = F.from_json(F.col("value").cast("string"), PEER_SCHEMA)
    trades = source.select(
        trade["symbol"].alias("symbol"),
        trade["price"].cast("double").alias("price"),
        trade["qty"].cast("double").alias("qty"),
        F.timestamp_millis(trade["trade_time"]).alias("event_time"),
    )
    windows = (
        trades.withWatermark("event_time", watermark)
        .groupBy(F.window("event_time", "1 minute"), "symbol")
        .agg(
            F.sum(F.col("price") * F.col("qty")).alias("notional"),
            F.sum("qty").alias("volume"),
            F.count("*").alias("trade_count"),
        )
    )
    start = F.unix_millis(F.col("window.start"))
    return windows.select(
        F.concat_ws("|", "symbol", start.cast("string")).alias("key"),
        F.to_json(
            F.struct(
                F.col("symbol"),
                start.alias("window_start"),
                (F.col("notional") / F.col("volume")).alias("vwap"),
                F.col("trade_count"),
            )
        ).alias("value"),
    )


def start_reference(spark: SparkSession, settings: Settings, name: str) -> StreamingQuery:
    source = kafka_source(spark, settings)
    checkpoint = checkpoint_location(settings.checkpoint_dir, name)
    trigger = settings.trigger_interval.text
    if name == "noop":
        writer = source.writeStream.format("noop")
    else:
        spark.conf.set("spark.sql.streaming.stateStore.providerClass", PEER_STATE_STORE)
        writer = (
            peer_windows(source, settings.watermark_delay.text)
            .writeStream.format("kafka")
            .outputMode("update")
            .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
            .option("topic", settings.aggregates_topic)
        )
    return (
        writer.queryName(name)
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime=trigger)
        .start()
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in REFERENCES:
        print(f"usage: python -m tests.bench.reference {'|'.join(REFERENCES)}", file=sys.stderr)
        return 2
    name = args[0]
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    spark = build_session(settings)
    publisher = MetricsPublisher(
        settings.kafka_bootstrap_servers, settings.metrics_topic, confluent_config(settings)
    )
    spark.streams.addListener(publisher)
    job = StreamingJob(
        spark, {name: start_reference(spark, settings, name)}, publisher, settings.checkpoint_dir
    )
    # tests.bench.stack.start_spark waits for this line, as for the job's.
    log.info("streaming %s -> %s (%s reference)", settings.raw_topic, settings.aggregates_topic, name)
    try:
        job.await_until(stop)
    finally:
        job.stop()
        stop_session(spark)
    return 0


if __name__ == "__main__":
    sys.exit(main())
