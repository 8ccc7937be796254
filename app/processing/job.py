"""I/O of the streaming job: the Kafka source, the three Kafka sink queries and their lifecycle.

One SparkSession runs three queries over the raw topic, each with its own checkpoint:
  live          update mode, every trigger re-emits the windows that changed (is_final=false)
  final         append mode, each window once, when the watermark passes its end (is_final=true)
  dead_letters  records that fail validation, as DeadLetter JSON
Update mode never re-emits a window after the watermark passes it and append mode never shows the
open window, hence two aggregate queries. The Kafka sink is at-least-once: after a crash a batch
may be written again with identical rows, which consumers (upserting by key) absorb.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from app.common.kafka_security import confluent_config, spark_kafka_options
from app.common.settings import Settings
from app.processing import transform
from app.processing.metrics import MetricsPublisher

log = logging.getLogger(__name__)

QUERY_NAMES = ("live", "final", "dead_letters")


def kafka_source(spark: SparkSession, settings: Settings) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .options(**spark_kafka_options(settings))
        .option("subscribe", settings.raw_topic)
        .option("startingOffsets", settings.starting_offsets)
    )
    if settings.max_offsets_per_trigger > 0:
        reader = reader.option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
    return reader.load()


def checkpoint_location(checkpoint_dir: str, query: str) -> str:
    """The query's checkpoint under `checkpoint_dir`, a path or a URI. Joined as text: a `Path` would
    fold the `//` of `s3a://bucket/ckpt` into `s3a:/bucket/ckpt`."""
    return f"{checkpoint_dir.rstrip('/')}/{query}"


def _kafka_sink(records: DataFrame, settings: Settings, name: str, topic: str, mode: str) -> StreamingQuery:
    return (
        records.writeStream.queryName(name)
        .format("kafka")
        .outputMode(mode)
        .options(**spark_kafka_options(settings))
        .option("topic", topic)
        .option("checkpointLocation", checkpoint_location(settings.checkpoint_dir, name))
        .trigger(processingTime=settings.trigger_interval.text)
        .start()
    )


@dataclass
class StreamingJob:
    """The running queries and the metrics listener; `stop()` ends them all."""

    spark: SparkSession
    queries: dict[str, StreamingQuery]
    publisher: MetricsPublisher
    _stopped: threading.Event = field(default_factory=threading.Event)

    def await_until(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Block until `stop` is set or a query dies; re-raises a query's failure."""
        while not stop.is_set():
            for query in self.queries.values():
                if not query.isActive:
                    error = query.exception()
                    if error is not None:
                        raise RuntimeError(f"query {query.name} failed: {error}")
                    raise RuntimeError(f"query {query.name} stopped unexpectedly")
            stop.wait(poll_s)

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        for name, query in self.queries.items():
            try:
                query.stop()
            except Exception:  # keep stopping the others
                log.exception("could not stop query %s", name)
        self.spark.streams.removeListener(self.publisher)
        self.publisher.close()
        log.info("streaming job stopped")


def start_job(spark: SparkSession, settings: Settings) -> StreamingJob:
    """Start the three queries (and the progress listener) on `spark`."""
    publisher = MetricsPublisher(
        settings.kafka_bootstrap_servers, settings.metrics_topic, confluent_config(settings)
    )
    spark.streams.addListener(publisher)
    queries: dict[str, StreamingQuery] = {}
    try:
        for name in QUERY_NAMES:
            # Each query reads the topic itself, so each has its own offsets in its own checkpoint.
            valid, invalid = transform.split_valid(transform.parse_trades(kafka_source(spark, settings)))
            if name == "dead_letters":
                records = transform.dead_letter_records(invalid)
                topic, mode = settings.dead_letter_topic, "append"
            else:
                windows = transform.aggregate_windows(valid, settings.watermark_delay.text)
                is_final = name == "final"
                records = transform.window_records(windows, is_final=is_final)
                topic, mode = settings.aggregates_topic, ("append" if is_final else "update")
            queries[name] = _kafka_sink(records, settings, name, topic, mode)
            log.info("started query %s -> %s (%s mode)", name, topic, mode)
    except Exception:
        job = StreamingJob(spark, queries, publisher)
        job.stop()
        raise
    return StreamingJob(spark, queries, publisher)
