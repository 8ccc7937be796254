"""Producer catch-up: the raw topic ends at trade id X, the exchange holds X + backlog; the producer
resumes from the topic's tail and back-fills through /historicalTrades within its weight budget.

trades/s = backlog / (ingest_time of the last back-filled trade - time of the producer's first
request), against the ceiling of the budget: budget / 25 weight per request x 1000 trades per
request per minute. The exchange's request log gives the used weight per fixed minute (as Binance
counts it), which must never exceed the producer's budget.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.common.schema import now_ms
from app.localkafka.broker import LocalBroker
from app.producer.binance import PAGE_SIZE, REQUEST_WEIGHT
from app.producer.trades import trades_from_body
from tests.bench import stats, topics
from tests.bench.stack import default_settings_env, settings_used
from tests.support.fake_exchange import HISTORICAL_TRADES_PATH, FakeExchange
from tests.support.pipeline import Process, pipeline_env, wait_for

SYMBOL = "BTCUSDT"
IN_TOPIC = 5_000  # trades already published before the outage


def ceiling_trades_per_s(budget: int) -> float:
    return budget / REQUEST_WEIGHT * PAGE_SIZE / 60


def run_catch_up(broker: LocalBroker, work: Path, backlog: int, budget: int) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    bootstrap = broker.bootstrap_servers
    env = pipeline_env(bootstrap, work / "checkpoints", (SYMBOL,)) | default_settings_env()
    env["TELEMETRY_WEIGHT_BUDGET_PER_MINUTE"] = str(budget)
    with FakeExchange(symbols=(SYMBOL,), initial_trades=IN_TOPIC, weight_limit=6000) as exchange:
        env["TELEMETRY_BINANCE_BASE_URL"] = exchange.base_url
        published = trades_from_body(json.dumps(exchange.trades(SYMBOL)).encode(), SYMBOL, now_ms())
        topics.produce_fast(
            bootstrap,
            env["TELEMETRY_RAW_TOPIC"],
            ((SYMBOL.encode(), t.to_json(), t.trade_time) for t in published),
        )
        exchange.append(SYMBOL, count=backlog)
        served_ids = exchange.trade_ids(SYMBOL)
        raw_size = topics.TopicSize(bootstrap, env["TELEMETRY_RAW_TOPIC"])
        producer = Process("app.producer", env, work / "producer.log")
        try:
            # Bounded by the budget's ceiling, with two minutes of slack for minute alignment.
            limit_s = 120 + 1.5 * backlog / ceiling_trades_per_s(budget)
            wait_for(
                lambda: raw_size() >= len(served_ids), limit_s, "the backlog in the raw topic", [producer]
            )
            assert producer.alive(), f"the producer died:\n{producer.tail()}"
        finally:
            producer.stop()
            raw_size.close()
        requests = exchange.requests()
        first_request_ms = int(requests[0].time * 1000)
        weight = {
            "budget_per_minute": budget,
            "max_weight_per_minute": exchange.max_weight_per_minute(),
            "max_weight_any_60s": exchange.max_weight_in_any_window(60),
            "requests": len(requests),
            "historical_requests": len(exchange.requests(HISTORICAL_TRADES_PATH)),
            "rejected_429_418": sum(1 for r in requests if r.status in (418, 429)),
        }
    raw = topics.raw_trades(bootstrap, env["TELEMETRY_RAW_TOPIC"])
    backfilled = [t for t in raw if t.trade_id > published[-1].trade_id]
    seconds = (max(t.ingest_time for t in backfilled) - first_request_ms) / 1000 if backfilled else None
    rate = backlog / seconds if seconds else None
    ceiling = ceiling_trades_per_s(budget)
    # The gap-detecting /trades poll, then one /historicalTrades page per 1000 trades.
    needed = 1 + -(-backlog // PAGE_SIZE)
    bound_s = stats.budget_bound_s(needed, budget // REQUEST_WEIGHT, (first_request_ms % 60_000) / 1000)
    return {
        "budget_per_minute": budget,
        "backlog": backlog,
        "settings": settings_used(env),
        "seconds": round(seconds, 2) if seconds else None,
        "trades_per_s": round(rate) if rate else None,
        "ceiling_trades_per_s": round(ceiling),
        "share_of_ceiling": round(rate / ceiling, 3) if rate else None,
        # A backlog smaller than a minute's budget may go faster than the per-minute ceiling: this is
        # the least time the fixed-minute budget allows from when the first request went out.
        "budget_bound_seconds": round(bound_s, 2),
        "requests_needed": needed,
        "weight": weight,
        "continuity": stats.id_continuity((t.trade_id for t in raw), served_ids),
    }
