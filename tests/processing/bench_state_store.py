"""Throughput of the streaming job with each state store provider (not part of the test suite).

    python -m tests.processing.bench_state_store --state-store hdfs --trades 60000

Starts its own loopback broker, writes synthetic trades (3 symbols, 20 minutes of event time),
runs the job in this process until every closed window is final, and prints one JSON line with
the wall time and the micro-batch durations taken from the metrics topic. Bounded: it gives up
after --timeout-s.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer

from app.common.schema import Trade
from app.common.settings import Settings
from app.core.windows import WINDOW_MS
from app.localkafka.broker import LocalBroker
from app.processing.job import start_job
from app.processing.session import HDFS_STATE_STORE, ROCKSDB_STATE_STORE, build_session
from tests.processing.conftest import wait_until, windows_by_finality
from tests.processing.dataset import T0, _trade
from tests.support.kafka import create_topics, read_all

PROVIDERS = {"hdfs": HDFS_STATE_STORE, "rocksdb": ROCKSDB_STATE_STORE}
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
MINUTES = 20


def synthetic(count: int) -> list[Trade]:
    step = MINUTES * WINDOW_MS // count
    trades = [
        _trade(SYMBOLS[i % 3], i, T0 + i * step, f"{60000 + i % 997}.{i % 89:02d}", f"0.{i % 9973:05d}1")
        for i in range(count)
    ]
    # One trade well after the rest moves the watermark past every window.
    trades.append(_trade("BTCUSDT", count, T0 + (MINUTES + 2) * WINDOW_MS, "60000", "1"))
    return trades


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-store", choices=sorted(PROVIDERS), default="hdfs")
    parser.add_argument("--trades", type=int, default=60_000)
    parser.add_argument("--max-offsets", type=int, default=10_000)
    parser.add_argument("--timeout-s", type=float, default=400)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    with LocalBroker(data_dir=work / "kafka") as broker:
        settings = Settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            checkpoint_dir=work / "checkpoints",
            trigger_interval="500 milliseconds",
            max_offsets_per_trigger=args.max_offsets,
        )
        topics = [
            settings.raw_topic,
            settings.aggregates_topic,
            settings.dead_letter_topic,
            settings.metrics_topic,
        ]
        create_topics(broker.bootstrap_servers, topics)
        trades = synthetic(args.trades)
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 50})
        for trade in trades:
            # Kafka timestamp = now: the trades' 2026-01-01 dates would fall to the 7-day retention.
            producer.produce(settings.raw_topic, key=trade.symbol.encode(), value=trade.to_json())
            producer.poll(0)
        producer.flush(60)
        expected = {(t.symbol, t.trade_time - t.trade_time % WINDOW_MS) for t in trades[:-1]}

        spark = build_session(settings, PROVIDERS[args.state_store])
        started = time.monotonic()
        job = start_job(spark, settings)
        try:
            wait_until(
                lambda: (
                    len(windows_by_finality(read_all(broker.bootstrap_servers, settings.aggregates_topic))[0])
                    >= len(expected)
                ),
                args.timeout_s,
                "all final windows",
                poll_s=0.5,
            )
            elapsed = time.monotonic() - started
        finally:
            job.stop()
            spark.stop()
        metrics = [json.loads(r.value) for r in read_all(broker.bootstrap_servers, settings.metrics_topic)]
        busy = [m["batch_duration_ms"] for m in metrics if m["query"] == "live" and m["num_input_rows"]]
        result = {
            "state_store": args.state_store,
            "trades": len(trades),
            "seconds_to_all_final": round(elapsed, 1),
            "trades_per_second": round(len(trades) / elapsed),
            "live_batches": len(busy),
            "live_batch_ms_median": statistics.median(busy),
            "live_batch_ms_max": max(busy),
        }
        print(json.dumps(result))


if __name__ == "__main__":
    main()
