"""`python -m app.producer` as a real process: SIGKILL mid-stream and restart lose and double nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.producer.kafka_helpers import (
    assert_exactly_once,
    end_offset_total,
    published_ids,
    published_trades,
    wait_for,
)
from tests.support.fake_exchange import FakeExchange
from tests.support.kafka import create_topics, unique_topic

REPO_ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _start(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app.producer", *args], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
        )


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _topics(bootstrap: str) -> tuple[str, str]:
    raw, metrics = unique_topic("raw"), unique_topic("metrics")
    create_topics(bootstrap, [raw], partitions=2)
    create_topics(bootstrap, [metrics])
    return raw, metrics


def test_sigkill_and_restart_lose_and_duplicate_nothing(bootstrap: str, tmp_path: Path) -> None:
    raw, metrics = _topics(bootstrap)
    log_path = tmp_path / "producer.log"
    # A generous limit: this test is about crashes; test_binance_source covers the budget.
    with FakeExchange(symbols=SYMBOLS, initial_trades=1200, weight_limit=100_000) as exchange:
        args = [
            "--source", "binance",
            "--binance-base-url", exchange.base_url,
            "--symbols", ",".join(SYMBOLS),
            "--kafka-bootstrap-servers", bootstrap,
            "--raw-topic", raw,
            "--metrics-topic", metrics,
            "--poll-interval-s", "0.2",
            "--weight-budget-per-minute", "50000",
            "--http-timeout-s", "1",
        ]  # fmt: skip
        first = {s: exchange.trade_ids(s)[200] for s in SYMBOLS}
        producer = _start(args, log_path)
        try:
            # The market moves once the fresh start has taken its first page.
            wait_for(lambda: end_offset_total(bootstrap, raw) >= 2000, 30, "the first page")
            exchange.start_ticker(trades_per_s=200)
            wait_for(lambda: end_offset_total(bootstrap, raw) > 2500, 30, "the first run to publish")
            producer.send_signal(signal.SIGKILL)
            assert producer.wait(timeout=10) == -signal.SIGKILL
            # While it is down the market moves on by more than one /trades page.
            exchange.append("BTCUSDT", count=1500)
            time.sleep(1.0)
            producer = _start(args, log_path)
            wait_for(lambda: end_offset_total(bootstrap, raw) > 6000, 30, "the second run to publish")
            exchange.stop_ticker()
            expected = sum(len(exchange.trade_ids(s)) - 200 for s in SYMBOLS)
            wait_for(lambda: end_offset_total(bootstrap, raw) >= expected, 30, "the second run to catch up")
            time.sleep(1.0)  # anything extra (a duplicate) would show up now
            assert _stop(producer) == 0, "SIGTERM is a clean exit"
        finally:
            if producer.poll() is None:
                producer.kill()
                producer.wait()
        by_symbol = published_ids(bootstrap, raw)
        for symbol in SYMBOLS:
            assert_exactly_once(by_symbol[symbol], first[symbol], exchange.trade_ids(symbol)[-1])
    log = log_path.read_text()
    assert "event=resume source=binance symbol=BTCUSDT last_id=" in log
    assert "event=gap_filled" in log


def test_replay_process_resumes_after_sigkill(bootstrap: str, tmp_path: Path) -> None:
    raw, metrics = _topics(bootstrap)
    log_path = tmp_path / "producer.log"
    args = [
        "--source", "replay",
        "--replay-speed", "100",
        "--kafka-bootstrap-servers", bootstrap,
        "--raw-topic", raw,
        "--metrics-topic", metrics,
    ]  # fmt: skip
    producer = _start(args, log_path)
    try:
        wait_for(lambda: end_offset_total(bootstrap, raw) > 300, 30, "the first run to publish")
        producer.send_signal(signal.SIGKILL)
        producer.wait(timeout=10)
        killed_at = end_offset_total(bootstrap, raw)
        producer = _start(args, log_path)
        wait_for(lambda: end_offset_total(bootstrap, raw) > killed_at + 300, 30, "the second run to publish")
        assert _stop(producer) == 0
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    trades = published_trades(bootstrap, raw)
    ids = [t.trade_id for t in trades]
    assert_exactly_once(ids, 4_500_000_000, ids[-1])
    now_ms = time.time_ns() // 1_000_000
    # Rebased to the present, never going back in time across the restart.
    assert [t.trade_time for t in trades] == sorted(t.trade_time for t in trades)
    assert now_ms - 120_000 < trades[0].trade_time <= now_ms


def test_bad_configuration_exits_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.producer",
            "--source",
            "replay",
            "--replay-file",
            str(tmp_path / "none.csv"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"cannot read replay file" in result.stderr
