"""Replay throughput: N trades already in a raw topic, the job started on a fresh checkpoint from the
earliest offset, timed until its query has consumed every offset.

trades/s = N / (end of the last micro-batch with input - start of the first one), from the job's own
progress reports on the metrics topic (batch start time + batch duration):
the JVM's start-up is left out (reported separately as wall time from process start). Beside it, not
as a target, the rate over the batches after the first, which carries the JVM's warm-up.

Two references read the same topic in the same run, timed the same way (tests/bench/reference.py):
Spark's read ceiling (a no-op sink) and a peer-style floating-point job, whose VWAPs are compared
with the exact ones. The job's run also checks that every raw record is accounted for.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from app.common.schema import SparkMetric, now_ms
from app.core.windows import WINDOW_MS, window_start
from app.localkafka.broker import LocalBroker
from app.processing.job import QUERY_NAME
from app.producer.trades import trade_from_binance
from tests.bench import stats, topics
from tests.bench.memory import SPARK_JOB, RssSampler
from tests.bench.reference import REFERENCES
from tests.bench.sizes import REPLAY_VARIANTS
from tests.bench.stack import default_settings_env, settings_used, start_spark
from tests.bench.trades import replay_windows
from tests.support.pipeline import Process, expected_windows, pipeline_env, wait_for
from tests.support.trades import closer

log = logging.getLogger(__name__)

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
MINUTES = 60


@dataclass
class ReplayData:
    raw_topic: str
    trades: int  # records in the raw topic, closers included
    closers: int  # records whose windows no later trade closes: they stay open
    expected: dict[str, dict[str, Any]]
    write_s: float


def prepare(broker: LocalBroker, work: Path, count: int) -> ReplayData:
    """Write `count` trades (and one closer per symbol) to a new raw topic; keep the exact reference
    of every window they make, computed one window at a time."""
    env = pipeline_env(broker.bootstrap_servers, work / "unused", SYMBOLS)
    raw_topic = env["TELEMETRY_RAW_TOPIC"]
    first_window = window_start(now_ms()) - (MINUTES + 120) * WINDOW_MS
    expected: dict[str, dict[str, Any]] = {}
    ingest = now_ms()
    last_id: dict[str, int] = {}

    def records() -> Any:
        for symbol, window in replay_windows(random.Random(7), SYMBOLS, count, first_window, MINUTES):
            expected.update(expected_windows(symbol, window))
            last_id[symbol] = window[-1]["id"]
            for item in window:
                trade = trade_from_binance(item, symbol, ingest)
                yield symbol.encode(), trade.to_json(), trade.trade_time
        closing = first_window + (MINUTES + 2) * WINDOW_MS
        for symbol in SYMBOLS:
            trade = trade_from_binance(closer(closing, last_id[symbol] + 1), symbol, ingest)
            yield symbol.encode(), trade.to_json(), trade.trade_time

    started = time.monotonic()
    written = topics.produce_fast(broker.bootstrap_servers, raw_topic, records())
    return ReplayData(raw_topic, written, len(SYMBOLS), expected, round(time.monotonic() - started, 1))


def consumed(progress: list[SparkMetric], total: int, query: str = QUERY_NAME) -> bool:
    return sum(m.num_input_rows for m in progress if m.query == query) >= total


def busy_batches(progress: list[SparkMetric]) -> list[SparkMetric]:
    """The batches with input, over every query, in the order they started."""
    return sorted((m for m in progress if m.num_input_rows and m.time), key=lambda m: m.time)


def busy_span_ms(progress: list[SparkMetric]) -> tuple[int, int] | None:
    """(start of the first batch with input, end of the last one), over every query."""
    busy = busy_batches(progress)
    if not busy:
        return None
    return busy[0].time, max(m.time + (m.batch_duration_ms or 0) for m in busy)


def after_first_batch(progress: list[SparkMetric]) -> tuple[int, float] | None:
    """(records, seconds) of the batches with input after the first one: the first carries the JVM's
    warm-up (query planning, code generation, JIT compilation), the others show the steady rate."""
    rest = busy_batches(progress)[1:]
    span = busy_span_ms(rest)
    if span is None:
        return None
    return sum(m.num_input_rows for m in rest), (span[1] - span[0]) / 1000


def replay_env(broker: LocalBroker, work: Path, data: ReplayData, variant: str) -> dict[str, str]:
    """A run's environment: new output topics, the replay's raw topic read from the start."""
    work.mkdir(parents=True, exist_ok=True)
    env = pipeline_env(broker.bootstrap_servers, work / "checkpoints", SYMBOLS) | default_settings_env()
    env |= {"TELEMETRY_RAW_TOPIC": data.raw_topic, "TELEMETRY_STARTING_OFFSETS": "earliest"}
    return env | REPLAY_VARIANTS[variant]


def wait_consumed(bootstrap: str, env: dict[str, str], data: ReplayData, query: str, job: Process) -> None:
    # Generous: 500 trades/s at least, on a machine other jobs may load many times over.
    wait_for(
        lambda: consumed(topics.spark_metrics(bootstrap, env["TELEMETRY_METRICS_TOPIC"]), data.trades, query),
        300 + data.trades / 500,
        "every offset consumed by the query",
        [job],
    )


def timing(progress: list[SparkMetric], trades: int) -> dict[str, Any]:
    span = busy_span_ms(progress)
    seconds = (span[1] - span[0]) / 1000 if span else None
    steady = after_first_batch(progress)
    first = next(iter(busy_batches(progress)), None)
    return {
        "busy_seconds": seconds,
        "trades_per_s": round(trades / seconds) if seconds else None,
        "first_batch_seconds": (first.batch_duration_ms or 0) / 1000 if first else None,
        stats.AFTER_FIRST_BATCH: round(steady[0] / steady[1]) if steady and steady[1] else None,
        "batches_with_input": sum(1 for m in progress if m.num_input_rows),
        "longest_batch_ms": max((m.batch_duration_ms or 0 for m in progress), default=0),
    }


def run_variant(broker: LocalBroker, work: Path, data: ReplayData, variant: str) -> dict[str, Any]:
    bootstrap = broker.bootstrap_servers
    env = replay_env(broker, work, data, variant)
    started = time.monotonic()
    spark = start_spark(env, work / "processing.log")
    sampler = RssSampler()
    sampler.watch(SPARK_JOB, spark.rss_bytes)
    sampler.start()
    try:
        wait_consumed(bootstrap, env, data, QUERY_NAME, spark)
        wall_s = time.monotonic() - started
        wait_for(
            lambda: data.expected.keys() <= topics.final_keys(bootstrap, env["TELEMETRY_AGGREGATES_TOPIC"]),
            120,
            "every replayed window final",
            [spark],
        )
    finally:
        sampler.stop()
        spark.stop()
    progress = topics.spark_metrics(bootstrap, env["TELEMETRY_METRICS_TOPIC"])
    _, finals = topics.aggregates(bootstrap, env["TELEMETRY_AGGREGATES_TOPIC"])
    raw_size = topics.TopicSize(bootstrap, data.raw_topic)
    try:
        raw_records = raw_size()
    finally:
        raw_size.close()
    ledgers = topics.last_ledgers(bootstrap, env["TELEMETRY_METRICS_TOPIC"])
    return {
        "variant": variant,
        "settings": settings_used(env),
        "trades": data.trades,
        **timing(progress, data.trades),
        "wall_seconds_incl_startup": round(wall_s, 1),
        "memory": sampler.report(),
        "exactness": stats.compare_windows(data.expected, finals),
        "conservation": stats.conservation(raw_records, finals, ledgers, data.closers),
    }


def run_reference(broker: LocalBroker, work: Path, data: ReplayData, name: str) -> dict[str, Any]:
    """One reference job (`python -m tests.bench.reference <name>`) over the replay's topic, with the
    default variant's settings."""
    bootstrap = broker.bootstrap_servers
    env = replay_env(broker, work, data, "default")
    started = time.monotonic()
    job = start_spark(env, work / "reference.log", name, module="tests.bench.reference")
    try:
        wait_consumed(bootstrap, env, data, name, job)
        wall_s = time.monotonic() - started
    finally:
        job.stop()
    figures = {
        "reference": name,
        "trades": data.trades,
        **timing(topics.spark_metrics(bootstrap, env["TELEMETRY_METRICS_TOPIC"]), data.trades),
        "wall_seconds_incl_startup": round(wall_s, 1),
    }
    if name == "peer":
        vwaps = topics.last_vwaps(bootstrap, env["TELEMETRY_AGGREGATES_TOPIC"])
        figures["vwap_vs_exact"] = stats.inexact_vwaps(data.expected, vwaps)
    return figures


def _round_name(name: str, number: int) -> str:
    return name if number == 1 else f"{name}, round {number}"


def run_replay(
    broker: LocalBroker, work: Path, count: int, variants: tuple[str, ...], rounds: int
) -> dict[str, Any]:
    """The job and its references take turns, `rounds` times, so a slow moment of the machine (or
    the first run's cold page cache and freshly written log) does not fall on one of them only. Each
    one's figure is its fastest round, as `timeit` takes the least disturbed run; every round's
    figures, conservation and exactness are kept and checked. The other variants run once, after."""
    data = prepare(broker, work, count)
    log.info("replay: %d trades written in %.1f s", data.trades, data.write_s)
    results: dict[str, Any] = {"trades": data.trades, "write_seconds": data.write_s, "rounds": rounds}
    results |= {"variants": {}, "references": {}}
    for number in range(1, rounds + 1):
        job = partial(run_variant, broker, work / f"default-{number}", data, "default")
        _run_or_error(results["variants"], "variant", "default", number, job)
        for name in REFERENCES:
            reference = partial(run_reference, broker, work / f"reference-{name}-{number}", data, name)
            _run_or_error(results["references"], "reference", name, number, reference)
    for variant in variants:
        if variant != "default":
            other = partial(run_variant, broker, work / f"{variant}-1", data, variant)
            _run_or_error(results["variants"], "variant", variant, 1, other)
    default = stats.fastest(results["variants"].values(), "variant", "default")
    for figures in results["variants"].values():
        figures["ratio_vs_default"] = stats.ratio(figures.get("trades_per_s"), default)
    references = results["references"].values()
    results["job_ratios"] = {
        name: stats.ratio(default, stats.fastest(references, "reference", name)) for name in REFERENCES
    }
    steady = stats.fastest(results["variants"].values(), "variant", "default", stats.AFTER_FIRST_BATCH)
    results["job_ratios_after_first_batch"] = {
        name: stats.ratio(steady, stats.fastest(references, "reference", name, stats.AFTER_FIRST_BATCH))
        for name in REFERENCES
    }
    return results


def _run_or_error(
    into: dict[str, Any], kind: str, name: str, number: int, run: Callable[[], dict[str, Any]]
) -> None:
    """One round of a variant or a reference (`kind`), its figures or its error kept under its name."""
    key = _round_name(name, number)
    log.info("replay %s %s", kind, key)
    try:
        figures = run()
    except (AssertionError, TimeoutError) as exc:
        # Too slow to finish in the bounded wait is a speed figure; a dead job is a failure.
        first_line = str(exc).split("\n", 1)[0]
        slow = "timed out" in first_line and "every offset consumed" in first_line
        figures = {kind: name, "error": str(exc)[-3000:], "timed_out": slow}
    into[key] = figures | {"round": number}
