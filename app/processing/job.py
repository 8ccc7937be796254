"""I/O of the streaming job: the Kafka source, the one query and its lifecycle.

One query reads the raw topic once per micro-batch, parses and validates each record once
(transform.py) and hands every record, grouped by symbol, to one stateful processor in the JVM
(java/telemetry/LedgerProcessor.java), whose rows name their own topic: live and final window
rows, late trades, dead letters and each symbol's ledger. Spark's built-in aggregation cannot
do this in one query: update mode never emits a final row and append mode never shows the open
window, and its watermark filter drops late trades without a trace. The Kafka sink is
at-least-once: after a crash a batch may be written again with identical rows, which consumers
absorb (windows upsert by key, late trades and dead letters are told apart by their raw partition
and offset).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from app.common.kafka_security import confluent_config, spark_kafka_options
from app.common.settings import Settings
from app.processing import transform
from app.processing.metrics import MetricsPublisher

log = logging.getLogger(__name__)

QUERY_NAME = "ledger"
# Spark's error classes when a checkpoint's state was written by another stateful operator (the
# processor moved from a Python worker, transformWithStateInPandas, to the JVM) or in another layout
# (the JVM processor's state went from decimal text to typed columns).
_EARLIER_STATE_ERRORS = (
    "STREAMING_STATEFUL_OPERATOR_NOT_MATCH_IN_STATE_METADATA",
    "STATE_STORE_VALUE_SCHEMA_NOT_COMPATIBLE",
)
# A large batch (a replay, a catch-up) is read by tasks of at most this many records rather than one
# task per Kafka partition: the producer keys records by symbol, so partitions fill unevenly, and
# with one task each, one core parsed twice the records of the other while the second waited.
READ_TASK_RECORDS = 25_000


def kafka_source(spark: SparkSession, settings: Settings) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .options(**spark_kafka_options(settings))
        .option("subscribe", settings.raw_topic)
        .option("startingOffsets", settings.starting_offsets)
        .option("maxRecordsPerPartition", str(READ_TASK_RECORDS))
    )
    if settings.max_offsets_per_trigger > 0:
        reader = reader.option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
    return reader.load()


def checkpoint_location(checkpoint_dir: str, query: str) -> str:
    """The query's checkpoint under `checkpoint_dir`, a path or a URI. Joined as text: a `Path` would
    fold the `//` of `s3a://bucket/ckpt` into `s3a:/bucket/ckpt`."""
    return f"{checkpoint_dir.rstrip('/')}/{query}"


def route(records: DataFrame, settings: Settings) -> DataFrame:
    """`transform.ledger_input` rows through the stateful processor: rows (topic, key, value) for
    every destination, each naming its topic."""
    spark = records.sparkSession
    routed = spark._jvm.telemetry.LedgerProcessor.route(  # type: ignore[union-attr]
        records._jdf,
        settings.raw_topic,
        settings.aggregates_topic,
        settings.late_trades_topic,
        settings.dead_letter_topic,
        settings.metrics_topic,
        *transform.wire_form(),
    )
    return DataFrame(routed, spark)


@dataclass
class StreamingJob:
    """The running queries and the metrics listener; `stop()` ends them all."""

    spark: SparkSession
    queries: dict[str, StreamingQuery]
    publisher: MetricsPublisher
    checkpoint_dir: str
    _stopped: threading.Event = field(default_factory=threading.Event)

    def await_until(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Block until `stop` is set or a query dies; re-raises a query's failure."""
        while not stop.is_set():
            for query in self.queries.values():
                if not query.isActive:
                    error = query.exception()
                    if error is not None:
                        if any(name in str(error) for name in _EARLIER_STATE_ERRORS):
                            raise RuntimeError(
                                f"query {query.name} cannot resume from {self.checkpoint_dir}: an"
                                " earlier version of the job wrote it with another stateful step or"
                                " state layout. Give the job a new checkpoint directory (README,"
                                " Reprocessing): it re-reads the raw topic and consumers replace the"
                                " rows it writes again."
                                f" Spark: {error}"
                            )
                        raise RuntimeError(f"query {query.name} failed: {error}")
                    raise RuntimeError(f"query {query.name} stopped unexpectedly")
            stop.wait(poll_s)

    def stop(self, drain_s: float = 30.0) -> None:
        """Stop between micro-batches: a batch interrupted mid-way makes Spark log its tasks'
        interruption as errors (and redo the batch after a restart), so let a running one end first,
        for at most `drain_s`."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        deadline = time.monotonic() + drain_s
        for name, query in self.queries.items():
            try:
                while query.isActive and query.status["isTriggerActive"] and time.monotonic() < deadline:
                    time.sleep(0.05)
                query.stop()
            except Exception:  # keep stopping the others
                log.exception("could not stop query %s", name)
        self.spark.streams.removeListener(self.publisher)
        self.publisher.close()
        log.info("streaming job stopped")


def start_job(spark: SparkSession, settings: Settings) -> StreamingJob:
    """Start the query (and the progress listener) on `spark`."""
    publisher = MetricsPublisher(
        settings.kafka_bootstrap_servers, settings.metrics_topic, confluent_config(settings)
    )
    spark.streams.addListener(publisher)
    records = route(
        transform.ledger_input(
            transform.parse_trades(kafka_source(spark, settings)), settings.watermark_delay.text
        ),
        settings,
    )
    queries: dict[str, StreamingQuery] = {}
    try:
        queries[QUERY_NAME] = (
            records.writeStream.queryName(QUERY_NAME)
            .format("kafka")
            .outputMode("append")
            .options(**spark_kafka_options(settings))
            .option("checkpointLocation", checkpoint_location(settings.checkpoint_dir, QUERY_NAME))
            .trigger(processingTime=settings.trigger_interval.text)
            .start()
        )
        log.info("started query %s", QUERY_NAME)
    except Exception:
        job = StreamingJob(spark, queries, publisher, settings.checkpoint_dir)
        job.stop()
        raise
    return StreamingJob(spark, queries, publisher, settings.checkpoint_dir)
