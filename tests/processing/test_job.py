"""The streaming job against a real broker: exact windows, dead letters, late-trade metrics."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import statistics
import threading
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle, TimerValues

from app.common.schema import DeadLetter, LateTrade, Trade, WindowStats
from app.core.windows import aggregate_all, window_start
from app.localkafka.broker import LocalBroker
from app.processing.job import QUERY_NAME, checkpoint_location, kafka_source, start_job
from tests.processing import dataset
from tests.processing.conftest import (
    PROBE_SYMBOL,
    PROBES,
    JobRun,
    expected_final_keys,
    job_settings,
    prepare_topics,
    windows_by_finality,
    write_records,
)

log = logging.getLogger(__name__)

EIGHT = re.compile(r"^[0-9]+\.[0-9]{8}$")
SIXTEEN = re.compile(r"^[0-9]+\.[0-9]{16}$")


def fraction_vwap(trades: list[Trade]) -> Decimal:
    """Independent of app.core: exact rational VWAP, then half-to-even at 8 places by hand."""
    exact = sum((Fraction(t.price) * Fraction(t.qty) for t in trades), Fraction(0)) / sum(
        (Fraction(t.qty) for t in trades), Fraction(0)
    )
    scaled = exact * 10**8
    whole, rest = divmod(scaled.numerator, scaled.denominator)
    if 2 * rest > scaled.denominator or (2 * rest == scaled.denominator and whole % 2 == 1):
        whole += 1
    return Decimal(whole).scaleb(-8)


def test_final_windows_equal_reference_and_fraction_vwap(job_run: JobRun) -> None:
    finals, _ = windows_by_finality(job_run.aggregates)
    trades = dataset.valid_trades(job_run.records)
    reference = aggregate_all(trades)
    assert finals.keys() == expected_final_keys(job_run.records)
    for key, values in finals.items():
        assert len(set(values)) == 1, f"{key} emitted different final rows: {values}"
        got = WindowStats.from_json(values[0])
        want = dataclasses.replace(reference[key], is_final=True)
        assert got == want
        if b"E" not in want.to_json():  # Decimal's str writes 0.00000001 as 1E-8; Spark writes it plainly
            assert values[0] == want.to_json()
        in_window = [
            t for t in trades if t.symbol == got.symbol and got.window_start <= t.trade_time < got.window_end
        ]
        assert got.vwap == fraction_vwap(in_window)


def test_live_rows_end_at_reference_including_open_window(job_run: JobRun) -> None:
    _, live = windows_by_finality(job_run.aggregates)
    live.pop(f"{PROBE_SYMBOL}|{dataset.T0 + 6 * dataset.MINUTE}")
    reference = aggregate_all(dataset.valid_trades(job_run.records))
    assert live.keys() == reference.keys()  # includes minute 6, whose window is still open
    for key, value in live.items():
        assert WindowStats.from_json(value) == reference[key]


def test_wire_layout_matches_window_stats(job_run: JobRun) -> None:
    for record in job_run.aggregates:
        payload = json.loads(record.value)
        assert list(payload) == list(WindowStats.__slots__)
        assert record.key.decode() == f"{payload['symbol']}|{payload['window_start']}"
        for name in ("open", "high", "low", "close", "vwap", "base_volume"):
            assert EIGHT.match(payload[name]), (name, payload[name])
        assert SIXTEEN.match(payload["quote_volume"]), payload["quote_volume"]
        for name in (
            "window_start",
            "window_end",
            "trade_count",
            "first_trade_id",
            "last_trade_id",
            "last_trade_time",
        ):
            assert type(payload[name]) is int


def test_rounding_ties_go_to_even(job_run: JobRun) -> None:
    finals, _ = windows_by_finality(job_run.aggregates)
    got = {WindowStats.from_json(v[0]).symbol: WindowStats.from_json(v[0]).vwap for v in finals.values()}
    assert got[dataset.TIE_UP[0]] == Decimal("1.00000002")
    assert got[dataset.TIE_DOWN[0]] == Decimal("1.00000002")


def test_open_and_close_break_time_ties_by_trade_id(job_run: JobRun) -> None:
    finals, _ = windows_by_finality(job_run.aggregates)
    eth_minute_1 = WindowStats.from_json(finals[f"ETHUSDT|{dataset.T0 + dataset.MINUTE}"][0])
    trades = [t for t in dataset.valid_trades(job_run.records) if t.symbol == "ETHUSDT"]
    minute = [
        t for t in trades if dataset.T0 + dataset.MINUTE <= t.trade_time < dataset.T0 + 2 * dataset.MINUTE
    ]
    last = max(minute, key=lambda t: (t.trade_time, t.trade_id))
    assert eth_minute_1.close == last.price
    assert eth_minute_1.last_trade_time == last.trade_time


def test_every_bad_record_is_dead_lettered_with_its_reason(job_run: JobRun) -> None:
    letters = [DeadLetter.from_json(r.value) for r in job_run.dead_letters]
    assert len(letters) == len(dataset.BAD_RECORDS)
    raw_offsets = {i: r for i, r in enumerate(job_run.records)}
    for letter, (value, reason) in zip(letters, dataset.BAD_RECORDS, strict=True):
        assert letter.topic == job_run.settings.raw_topic
        assert letter.partition == 0
        assert raw_offsets[letter.offset].value == value
        assert letter.reason.startswith(reason), (letter.reason, reason)
        if value is not None:
            assert letter.value == value.decode("utf-8", errors="replace")
        assert all(r.key == b"bad" for r in job_run.dead_letters)


def test_late_trades_reach_the_late_topic_one_by_one(job_run: JobRun) -> None:
    sent_late = {r.trade.trade_id: r for r in job_run.records if r.late and r.trade is not None}
    late = [LateTrade.from_json(r.value) for r in job_run.late]
    assert sorted(t.trade_id for t in late) == sorted(sent_late)
    for trade in late:
        sent = sent_late[trade.trade_id]
        assert sent.value is not None and trade.value == sent.value.decode()
        assert trade.window_end <= trade.watermark
        assert trade.window_start == window_start(sent.trade.trade_time) if sent.trade else False
    ledgers = job_run.ledgers
    assert sum(ledger.late for ledger in ledgers.values()) == len(sent_late)
    assert max(m.watermark or 0 for m in job_run.metrics) >= dataset.FINAL_WATERMARK
    assert {m.query for m in job_run.metrics} == {"ledger"}


def test_every_record_is_accounted_for_once(job_run: JobRun) -> None:
    ledgers = job_run.ledgers.values()
    finals, _ = windows_by_finality(job_run.aggregates)
    final_trades = sum(WindowStats.from_json(v[0]).trade_count for v in finals.values())
    open_trades = sum(ledger.open_trades for ledger in ledgers)
    assert sum(ledger.records for ledger in ledgers) == len(job_run.records) + PROBES
    assert sum(ledger.final_trades for ledger in ledgers) == final_trades
    assert len(job_run.records) + PROBES == (
        final_trades
        + open_trades
        + len(job_run.late)
        + len(job_run.dead_letters)
        + sum(ledger.duplicates for ledger in ledgers)
    )


def test_reports_latency_and_batch_duration(job_run: JobRun) -> None:
    durations = [m.batch_duration_ms for m in job_run.metrics if m.num_input_rows]
    log.warning(
        "uninterrupted run: %.1f s to all final windows; ingest->live latency ms %s (median %s); "
        "live batch duration ms median %s max %s",
        job_run.seconds_to_complete,
        job_run.latencies_ms,
        statistics.median(job_run.latencies_ms),
        statistics.median(durations),
        max(durations),
    )
    assert len(job_run.latencies_ms) == 5
    assert all(0 <= ms < 30_000 for ms in job_run.latencies_ms)


class _StatelessCounter(StatefulProcessor):
    """The smallest Python stateful processor: the operator the job's checkpoint held before the
    processor moved to the JVM."""

    def init(self, handle: StatefulProcessorHandle) -> None:
        pass

    def handleInputRows(
        self, key: Any, rows: Iterator[pd.DataFrame], timerValues: TimerValues
    ) -> Iterator[pd.DataFrame]:
        yield pd.DataFrame({"partition": [key[0]]})


def test_a_checkpoint_of_another_stateful_step_is_refused_with_the_remedy(
    spark: SparkSession, kafka_broker: LocalBroker, tmp_path: Path
) -> None:
    """A checkpoint written by another stateful operator (as the Python processor's was) stops the
    job with an error that says what to do, instead of Spark's alone."""
    settings = job_settings(kafka_broker.bootstrap_servers, tmp_path / "checkpoints", "upgrade")
    records = dataset.build()[:20]
    prepare_topics(settings, records[:10])
    other = (
        kafka_source(spark, settings)
        .groupBy("partition")
        .transformWithStateInPandas(_StatelessCounter(), "partition INT", "Append", "None")
        .writeStream.format("noop")
        .option("checkpointLocation", checkpoint_location(settings.checkpoint_dir, QUERY_NAME))
        .start()
    )
    try:
        other.processAllAvailable()
    finally:
        other.stop()

    # Spark compares the operators when the next batch runs, so give it one.
    write_records(settings.kafka_bootstrap_servers, settings.raw_topic, records[10:], already=10)
    job = start_job(spark, settings)
    give_up = threading.Timer(120, job.stop)
    give_up.start()
    try:
        with pytest.raises(RuntimeError, match=r"cannot resume from .* new checkpoint directory"):
            job.await_until(threading.Event())
    finally:
        give_up.cancel()
        job.stop()
