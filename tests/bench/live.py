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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.common.schema import now_ms
from app.common.settings import Settings
from app.core.windows import WINDOW_MS, window_start
from app.localkafka.broker import LocalBroker
from tests.bench import stats, topics
from tests.bench.memory import SPARK_JOB, RssSampler
from tests.bench.sizes import Size
from tests.bench.stack import Dashboard, default_settings_env, settings_used, start_spark
from tests.bench.trades import PriceWalk, live_trades
from tests.support.fake_exchange import TRADES_PATH, FakeExchange
from tests.support.pipeline import Process, expected_windows, pipeline_env, tree_rss_bytes, wait_for
from tests.support.trades import closer

log = logging.getLogger(__name__)

SYMBOL = "BTCUSDT"  # the appliance's default: one symbol
TICK_S = 0.1


@dataclass
class Fed:
    """What was fed, per trade id: its phase and how far it was dated back."""

    phase: dict[int, str] = field(default_factory=dict)
    late_ms: dict[int, int] = field(default_factory=dict)
    by_phase: dict[str, int] = field(default_factory=dict)


def feed(exchange: FakeExchange, walk: PriceWalk, fed: Fed, phase: str, rate: int, seconds: float,
         processes: list[Process]) -> None:  # fmt: skip
    """Append `rate` trades/s to the exchange in 100 ms ticks for `seconds`, times = now."""
    started = time.monotonic()
    owed = 0.0
    ticks = round(seconds / TICK_S)
    for tick in range(1, ticks + 1):
        owed += rate * TICK_S
        count, owed = int(owed), owed - int(owed)
        trades = live_trades(walk, count, now_ms())
        lateness = [t.pop("late_ms") for t in trades]
        for trade, late in zip(exchange.append(SYMBOL, trades=trades), lateness, strict=True):
            fed.phase[trade["id"]] = phase
            fed.late_ms[trade["id"]] = late
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
) -> dict[str, Any]:
    """One live run; returns its figures. Raises AssertionError/TimeoutError when the run breaks."""
    work.mkdir(parents=True, exist_ok=True)
    bootstrap = broker.bootstrap_servers
    env = pipeline_env(bootstrap, work / "checkpoints", (SYMBOL,)) | default_settings_env() | overrides
    settings = Settings.from_env(env)
    walk = PriceWalk(random.Random(20261124))
    fed = Fed()
    processes: list[Process] = []
    dashboard: Dashboard | None = None
    with FakeExchange(symbols=(SYMBOL,), initial_trades=0, weight_limit=6000) as exchange:
        env["TELEMETRY_BINANCE_BASE_URL"] = exchange.base_url
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
            wait_for(lambda: len(exchange.requests(TRADES_PATH)) >= 2, 60, "the first polls", processes)

            feed(exchange, walk, fed, "warm_up", size.live_rate, size.warm_up_s, processes)
            aggregates_size = topics.TopicSize(bootstrap, settings.aggregates_topic)
            try:
                wait_for(lambda: aggregates_size() > 0, 180, "the first aggregate row", processes)
            finally:
                aggregates_size.close()
            feed(exchange, walk, fed, "live", size.live_rate, size.live_s, processes)
            feed(exchange, walk, fed, "burst", size.burst_rate, size.burst_s, processes)
            # The burst's tail at the live rate, not measured: the market does not stop after a burst.
            feed(exchange, walk, fed, "after_burst", size.live_rate, 5, processes)

            served = exchange.trades(SYMBOL)
            raw_size = topics.TopicSize(bootstrap, settings.raw_topic)
            try:
                wait_for(
                    lambda: raw_size() >= len(served), 300, "every fed trade in the raw topic", processes
                )
            finally:
                raw_size.close()
            last = max(t["time"] for t in served)
            exchange.append(SYMBOL, trades=[closer(max(last, now_ms()) + WINDOW_MS + 15_000)])
            expected = expected_windows(SYMBOL, served)
            wait_for(
                lambda: expected.keys() <= topics.final_keys(bootstrap, settings.aggregates_topic),
                240,
                "every window final",
                processes,
            )
            for process in processes:
                assert process.alive(), f"{process.log_path.name} died:\n{process.tail()}"
            served_ids = exchange.trade_ids(SYMBOL)  # the closer too
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

    raw = topics.raw_trades(bootstrap, settings.raw_topic)
    continuity = stats.id_continuity((t.trade_id for t in raw), served_ids)
    rows, finals = topics.aggregates(bootstrap, settings.aggregates_topic)
    measured = [t for t in raw if fed.phase.get(t.trade_id) in ("live", "burst")]
    row_time = stats.first_row_times(
        rows, ((t.symbol, t.trade_id, window_start(t.trade_time)) for t in measured)
    )
    latencies: dict[str, dict[str, list[int]]] = {}
    for trade in measured:
        at = row_time.get(trade.trade_id)
        if at is None:
            continue
        phase = latencies.setdefault(fed.phase[trade.trade_id], {"trade_time": [], "ingest_time": []})
        phase["ingest_time"].append(at - trade.ingest_time)
        if fed.late_ms[trade.trade_id] == 0:
            phase["trade_time"].append(at - trade.trade_time)
    return {
        "variant": variant,
        "settings": settings_used(env),
        "fed": fed.by_phase,
        "latency_ms": {p: {m: stats.summarize(v) for m, v in ms.items()} for p, ms in latencies.items()},
        "trades_without_row": len(measured) - len(row_time),
        "continuity": continuity,
        "exactness": stats.compare_windows(expected, finals),
        "weight": weight,
        "samples": latencies,  # for the chart; dropped from the JSON
    }
