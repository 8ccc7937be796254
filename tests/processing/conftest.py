"""One Spark session and one uninterrupted run of the job, shared by the processing tests.

Spark takes ~7 s to start and 4-8 s for its first batch, so the job runs once over the whole
data set (tests/processing/dataset.py) and the tests inspect what it wrote to Kafka.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from pyspark.sql import SparkSession

from app.common.schema import SparkLedger, SparkMetric, WindowStats, metric_from_json, window_key
from app.common.settings import ENV_PREFIX, Settings
from app.core.windows import WINDOW_MS, window_start
from app.processing.job import start_job
from app.processing.session import build_session
from tests.processing import dataset
from tests.support.conservation import newest_ledgers
from tests.support.kafka import create_topics, read_all, unique_topic, write_raw

PROBE_SYMBOL = "PROBEUSDT"
PROBES = 5


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(poll_s)


def job_settings(bootstrap: str, checkpoint_dir: Path, prefix: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        raw_topic=unique_topic(f"{prefix}_raw"),
        aggregates_topic=unique_topic(f"{prefix}_agg"),
        dead_letter_topic=unique_topic(f"{prefix}_dlq"),
        late_trades_topic=unique_topic(f"{prefix}_late"),
        metrics_topic=unique_topic(f"{prefix}_metrics"),
        checkpoint_dir=str(checkpoint_dir),
        watermark_delay=dataset.WATERMARK,
        trigger_interval="500 milliseconds",
        max_offsets_per_trigger=dataset.BATCH,
        starting_offsets="earliest",
    )


def job_environment(settings: Settings) -> dict[str, str]:
    """The environment that runs `python -m app.processing` with `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for name in (
        "kafka_bootstrap_servers",
        "raw_topic",
        "aggregates_topic",
        "dead_letter_topic",
        "late_trades_topic",
        "metrics_topic",
        "checkpoint_dir",
        "watermark_delay",
        "trigger_interval",
        "max_offsets_per_trigger",
        "starting_offsets",
    ):
        env[ENV_PREFIX + name.upper()] = str(getattr(settings, name))
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    return env


def prepare_topics(settings: Settings, records: list[dataset.Record]) -> None:
    topics = [
        settings.raw_topic,
        settings.aggregates_topic,
        settings.dead_letter_topic,
        settings.late_trades_topic,
        settings.metrics_topic,
    ]
    # The trades are dated 2026-01-01 and carry that as their Kafka timestamp: under the broker's
    # default 7-day retention its cleaner deletes them mid-test, so these topics keep data forever.
    create_topics(settings.kafka_bootstrap_servers, topics, configs={"retention.ms": "-1"})
    write_records(settings.kafka_bootstrap_servers, settings.raw_topic, records)


def write_records(bootstrap: str, topic: str, records: list[dataset.Record], already: int = 0) -> None:
    """Write in order (one in flight, retried: a fresh topic's leader may not be known yet) after
    the `already` records the topic holds."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", retries=10, max_in_flight_requests_per_connection=1
    )
    try:
        for r in records:  # a None value (a tombstone) is one of the bad records
            producer.send(topic, key=r.key, value=r.value, timestamp_ms=r.timestamp_ms)
        producer.flush(timeout=60)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        end = consumer.end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)]
    finally:
        consumer.close()
    assert end == already + len(records), f"{topic} ends at {end}, not {already} + {len(records)}"


def expected_final_keys(records: list[dataset.Record]) -> set[str]:
    return {
        window_key(t.symbol, window_start(t.trade_time))
        for t in dataset.valid_trades(records)
        if window_start(t.trade_time) + WINDOW_MS <= dataset.FINAL_WATERMARK
    }


def windows_by_finality(records: list[ConsumerRecord]) -> tuple[dict[str, list[bytes]], dict[str, bytes]]:
    """(every final value per key, the last live value per key) of an aggregates topic."""
    finals: dict[str, list[bytes]] = {}
    live: dict[str, bytes] = {}
    for record in records:
        key = record.key.decode()
        if json.loads(record.value)["is_final"]:
            finals.setdefault(key, []).append(record.value)
        else:
            live[key] = record.value
    return finals, live


def output_complete(settings: Settings, records: list[dataset.Record]) -> bool:
    finals, _ = windows_by_finality(read_all(settings.kafka_bootstrap_servers, settings.aggregates_topic))
    dead = read_all(settings.kafka_bootstrap_servers, settings.dead_letter_topic)
    return expected_final_keys(records) <= finals.keys() and len(dead) >= len(dataset.BAD_RECORDS)


def spark_metrics(bootstrap: str, topic: str) -> tuple[list[SparkMetric], list[SparkLedger]]:
    """The metrics topic, decoded by its contract; the job is its only writer here."""
    metrics = [metric_from_json(r.key, r.value) for r in read_all(bootstrap, topic)]
    assert all(isinstance(m, SparkMetric | SparkLedger) for m in metrics), metrics
    return [m for m in metrics if isinstance(m, SparkMetric)], [
        m for m in metrics if isinstance(m, SparkLedger)
    ]


@dataclass
class JobRun:
    settings: Settings
    records: list[dataset.Record]
    aggregates: list[ConsumerRecord]
    dead_letters: list[ConsumerRecord]
    late: list[ConsumerRecord]
    metrics: list[SparkMetric]
    ledgers: dict[str, SparkLedger]
    latencies_ms: list[int] = field(default_factory=list)
    seconds_to_complete: float = 0.0


def _measure_latency(settings: Settings) -> list[int]:
    """Ingest one probe trade at a time into the open window; ms until its live row is on Kafka."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    tp = TopicPartition(settings.aggregates_topic, 0)
    consumer.assign([tp])
    consumer.seek_to_end(tp)
    consumer.position(tp)
    key = window_key(PROBE_SYMBOL, dataset.T0 + 6 * dataset.MINUTE)
    latencies: list[int] = []
    try:
        for n in range(1, PROBES + 1):
            ingest = int(time.time() * 1000)
            at = dataset.T0 + 6 * dataset.MINUTE + (20 + n) * dataset.SECOND
            trade = dataset._trade(PROBE_SYMBOL, 900_000 + n, at, "100.5", "1")
            trade = dataclasses.replace(trade, ingest_time=ingest)
            write_raw(settings.kafka_bootstrap_servers, settings.raw_topic, [(b"p", trade.to_json(), at)])
            deadline = time.monotonic() + 30
            seen = False
            while not seen and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=200).values():
                    for record in batch:
                        if (
                            record.key.decode() == key
                            and WindowStats.from_json(record.value).trade_count == n
                        ):
                            latencies.append(record.timestamp - ingest)
                            seen = True
            if not seen:
                raise TimeoutError(f"probe {n} never reached the aggregates topic")
    finally:
        consumer.close()
    return latencies


@pytest.fixture(scope="session")
def spark(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    # Depends on the broker so that it stops after Spark, whose cached producers would retry it.
    # The job runs no Python on Spark's side, but a test writes a checkpoint with a Python stateful
    # processor (the job's before it moved to the JVM), whose worker needs this venv's pandas.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = build_session(Settings(checkpoint_dir=str(tmp_path_factory.mktemp("spark"))))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def job_run(spark: SparkSession, kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> JobRun:
    records = dataset.build()
    settings = job_settings(kafka_broker.bootstrap_servers, tmp_path_factory.mktemp("ckpt"), "inproc")
    prepare_topics(settings, records)
    started = time.monotonic()
    job = start_job(spark, settings)
    try:
        wait_until(lambda: output_complete(settings, records), 300, "final windows and dead letters")
        elapsed = time.monotonic() - started
        latencies = _measure_latency(settings)
    finally:
        job.stop()
    bootstrap = settings.kafka_bootstrap_servers
    metrics, ledgers = spark_metrics(bootstrap, settings.metrics_topic)
    return JobRun(
        settings=settings,
        records=records,
        aggregates=read_all(bootstrap, settings.aggregates_topic),
        dead_letters=read_all(bootstrap, settings.dead_letter_topic),
        late=read_all(bootstrap, settings.late_trades_topic),
        metrics=metrics,
        ledgers=newest_ledgers(ledgers),
        latencies_ms=latencies,
        seconds_to_complete=elapsed,
    )
