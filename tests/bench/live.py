"""The live run: fake exchange -> producer -> Kafka -> Spark -> aggregates, fed in real time.

Phases: warm-up (not measured), a live rate, a burst; then a trade far ahead closes every window.
Latency of a trade = Kafka timestamp of the first aggregates record of its (symbol, window) whose
last_trade_id >= the trade's id, minus the trade's time (trades dated back on purpose excluded) or
minus its ingest_time (the producer's clock when it read the trade; all trades). The same run
checks the raw topic's id continuity, the exactness of every closed window and the weight budget.
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.common.schema import Trade, now_ms
from app.common.settings import Settings
from app.core.windows import WINDOW_MS, window_start
from app.localkafka.broker import LocalBroker
from app.processing.job import QUERY_NAME
from tests.bench import stats, topics
from tests.bench.memory import SPARK_JOB, RssSampler
from tests.bench.sizes import Size
from tests.bench.stack import Dashboard, default_settings_env, settings_used, start_spark
from tests.bench.trades import PriceWalk, live_trades
from tests.support.fake_exchange import TRADES_PATH, FakeExchange
from tests.support.fake_ws import FakeStream
from tests.support.pipeline import Process, expected_windows, pipeline_env, tree_rss_bytes, wait_for
from tests.support.trades import closer

log = logging.getLogger(__name__)

SYMBOL = "BTCUSDT"  # the appliance's default: one symbol
TICK_S = 0.1


@dataclass
class Fed:
    """What was fed, per trade id: its phase and how far it was dated back."""

    phase: dict[tuple[str, int], str] = field(default_factory=dict)  # by (symbol, trade id)
    late_ms: dict[tuple[str, int], int] = field(default_factory=dict)
    by_phase: dict[str, int] = field(default_factory=dict)


def feed(exchange: FakeExchange, walk: PriceWalk, fed: Fed, phase: str, rate: int, seconds: float,
         processes: list[Process], symbols: tuple[str, ...] = (SYMBOL,)) -> None:  # fmt: skip
    """Append `rate` trades/s to the exchange in 100 ms ticks for `seconds`, times = now, shared
    evenly by the symbols."""
    started = time.monotonic()
    owed = 0.0
    ticks = round(seconds / TICK_S)
    for tick in range(1, ticks + 1):
        owed += rate * TICK_S
        count, owed = int(owed), owed - int(owed)
        for index, symbol in enumerate(symbols):
            share = count // len(symbols) + (1 if index < count % len(symbols) else 0)
            trades = live_trades(walk, share, now_ms())
            lateness = [t.pop("late_ms") for t in trades]
            for trade, late in zip(exchange.append(symbol, trades=trades), lateness, strict=True):
                fed.phase[symbol, trade["id"]] = phase
                fed.late_ms[symbol, trade["id"]] = late
        fed.by_phase[phase] = fed.by_phase.get(phase, 0) + count
        if tick % 10 == 0:
            for process in processes:
                assert process.alive(), f"{process.log_path.name} died:\n{process.tail()}"
        delay = started + tick * TICK_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def run_live(
    broker: LocalBroker,
    work: Path,
    size: Size,
    variant: str,
    overrides: dict[str, str],
    sampler: RssSampler | None = None,
    browser: bool = False,
    symbols: tuple[str, ...] = (SYMBOL,),
) -> dict[str, Any]:
    """One live run; returns its figures. Raises AssertionError/TimeoutError when the run breaks.
    With TELEMETRY_SOURCE=binance_ws in `overrides` the exchange's trade stream is served too."""
    work.mkdir(parents=True, exist_ok=True)
    bootstrap = broker.bootstrap_servers
    env = pipeline_env(bootstrap, work / "checkpoints", symbols) | default_settings_env() | overrides
    settings = Settings.from_env(env)
    walk = PriceWalk(random.Random(20261124))
    fed = Fed()
    processes: list[Process] = []
    dashboard: Dashboard | None = None
    with ExitStack() as stack:
        exchange = stack.enter_context(FakeExchange(symbols=symbols, initial_trades=0, weight_limit=6000))
        env["TELEMETRY_BINANCE_BASE_URL"] = exchange.base_url
        stream = stack.enter_context(FakeStream(exchange)) if settings.source == "binance_ws" else None
        if stream is not None:
            env["TELEMETRY_BINANCE_WS_URL"] = stream.url
        try:
            spark = start_spark(env, work / "processing.log")
            processes.append(spark)
            producer = Process("app.producer", env, work / "producer.log")
            processes.append(producer)
            if sampler is not None:
                dashboard = Dashboard(env, work, browser)
                processes.append(dashboard.server)
                sampler.watch(
                    "kafka broker", lambda: tree_rss_bytes(broker.process.pid) if broker.process else 0
                )
                sampler.watch("producer", producer.rss_bytes)
                sampler.watch(SPARK_JOB, spark.rss_bytes)
                sampler.watch("dashboard server", dashboard.server.rss_bytes)
                if dashboard.browser is not None:
                    pid = dashboard.browser.pid
                    sampler.watch("browser (client, not in the stack)", lambda: tree_rss_bytes(pid), False)
                sampler.start()
            if stream is None:
                wait_for(lambda: len(exchange.requests(TRADES_PATH)) >= 2, 60, "the first polls", processes)
            else:
                wait_for(lambda: stream.connections() >= 1, 60, "the stream", processes)

            feed(exchange, walk, fed, "warm_up", size.live_rate, size.warm_up_s, processes, symbols)
            aggregates_size = topics.TopicSize(bootstrap, settings.aggregates_topic)
            try:
                wait_for(lambda: aggregates_size() > 0, 180, "the first aggregate row", processes)
            finally:
                aggregates_size.close()
            live_from = now_ms()
            feed(exchange, walk, fed, "live", size.live_rate, size.live_s, processes, symbols)
            live_to = now_ms()
            feed(exchange, walk, fed, "burst", size.burst_rate, size.burst_s, processes, symbols)
            # The burst's tail at the live rate, not measured: the market does not stop after a burst.
            feed(exchange, walk, fed, "after_burst", size.live_rate, 5, processes, symbols)

            served_by_symbol = {symbol: exchange.trades(symbol) for symbol in symbols}
            served = [t for trades in served_by_symbol.values() for t in trades]
            raw_size = topics.TopicSize(bootstrap, settings.raw_topic)
            try:
                wait_for(
                    lambda: raw_size() >= len(served), 300, "every fed trade in the raw topic", processes
                )
            finally:
                raw_size.close()
            last = max(t["time"] for t in served)
            for symbol in symbols:
                exchange.append(symbol, trades=[closer(max(last, now_ms()) + WINDOW_MS + 15_000)])
            expected: dict[str, Any] = {}
            for symbol, trades in served_by_symbol.items():
                expected |= expected_windows(symbol, trades)
            wait_for(
                lambda: expected.keys() <= topics.final_keys(bootstrap, settings.aggregates_topic),
                240,
                "every window final",
                processes,
            )
            for process in processes:
                assert process.alive(), f"{process.log_path.name} died:\n{process.tail()}"
            served_ids = {symbol: exchange.trade_ids(symbol) for symbol in symbols}  # the closers too
            weight = {
                "budget_per_minute": settings.weight_budget_per_minute,
                "max_weight_per_minute": exchange.max_weight_per_minute(),
                "max_weight_any_60s": exchange.max_weight_in_any_window(60),
                "requests": len(exchange.requests()),
                "rejected_429_418": sum(1 for r in exchange.requests() if r.status in (418, 429)),
            }
        finally:
            if sampler is not None:
                sampler.stop()
            if dashboard is not None:
                dashboard.stop()
            for process in reversed(processes):
                if process is not (dashboard.server if dashboard else None):
                    process.stop()

    # The micro-batches that started while the steady live rate was fed.
    batch_ms = [
        m.batch_duration_ms
        for m in topics.spark_metrics(bootstrap, settings.metrics_topic)
        if m.query == QUERY_NAME and m.batch_duration_ms is not None and live_from <= m.time < live_to
    ]
    raw = topics.raw_trades(bootstrap, settings.raw_topic)
    continuity = _continuity(raw, served_ids)
    rows, finals = topics.aggregates(bootstrap, settings.aggregates_topic)
    measured = [t for t in raw if fed.phase.get((t.symbol, t.trade_id)) in ("live", "burst")]
    row_time: dict[tuple[str, int], int] = {}
    for symbol in symbols:  # first_row_times is keyed by trade id, which each symbol numbers alone
        ours = [t for t in measured if t.symbol == symbol]
        found = stats.first_row_times(
            (r for r in rows if r.symbol == symbol),
            ((symbol, t.trade_id, window_start(t.trade_time)) for t in ours),
        )
        row_time |= {(symbol, trade_id): at for trade_id, at in found.items()}
    latencies: dict[str, dict[str, list[int]]] = {}
    for trade in measured:
        key = (trade.symbol, trade.trade_id)
        at = row_time.get(key)
        if at is None:
            continue
        phase = latencies.setdefault(fed.phase[key], {"trade_time": [], "ingest_time": []})
        phase["ingest_time"].append(at - trade.ingest_time)
        if fed.late_ms[key] == 0:
            phase["trade_time"].append(at - trade.trade_time)
    return {
        "variant": variant,
        "symbols": len(symbols),
        "settings": settings_used(env),
        "fed": fed.by_phase,
        "latency_ms": {p: {m: stats.summarize(v) for m, v in ms.items()} for p, ms in latencies.items()},
        "trades_without_row": len(measured) - len(row_time),
        "keeping_up": stats.keeping_up(batch_ms, settings.trigger_interval.ms),
        "continuity": continuity,
        "exactness": stats.compare_windows(expected, finals),
        "weight": weight,
        "samples": latencies,  # for the chart; dropped from the JSON
    }


def _continuity(raw: list[Trade], served: dict[str, list[int]]) -> dict[str, Any]:
    """stats.id_continuity of each symbol, summed (ids repeat across symbols)."""
    parts = [
        stats.id_continuity((t.trade_id for t in raw if t.symbol == s), ids) for s, ids in served.items()
    ]
    total: dict[str, Any] = {
        k: sum(p[k] for p in parts) for k in ("served", "published", "lost", "duplicated", "unexpected")
    }
    total["examples"] = {
        k: [e for p in parts for e in p["examples"][k]][:5] for k in ("lost", "duplicated", "unexpected")
    }
    return total
