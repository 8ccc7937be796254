"""Reading the raw topic's tail on the real broker: where a restarted producer resumes."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from app.common.schema import Trade
from app.producer.kafka_io import TailError, read_tail
from tests.support.kafka import create_topics, unique_topic, write_raw


def _trade(symbol: str, trade_id: int) -> Trade:
    # Current times: records older than the topic's retention may vanish at its next check.
    now_ms = time.time_ns() // 1_000_000
    return Trade(trade_id, symbol, Decimal("67000.01"), Decimal("0.1"), Decimal("6700.001"), now_ms, False)


def test_tail_gives_the_last_trade_per_symbol_skipping_bad_records(bootstrap: str) -> None:
    topic = unique_topic("raw")
    create_topics(bootstrap, [topic], partitions=2)
    records: list[tuple[bytes | None, bytes, int | None]] = []
    for trade_id in range(1, 601):
        records.append((b"BTCUSDT", _trade("BTCUSDT", trade_id).to_json(), None))
        if trade_id <= 30:
            records.append((b"ETHUSDT", _trade("ETHUSDT", 10_000 + trade_id).to_json(), None))
    # What a crash or a foreign writer can leave at the end: not JSON, invalid fields.
    records += [(b"BTCUSDT", b"\x00garbage", None), (b"BTCUSDT", b'{"trade_id": 999999}', None)]
    write_raw(bootstrap, topic, records)
    tail = read_tail(bootstrap, topic, ["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    assert tail["BTCUSDT"].trade_id == 600
    assert tail["ETHUSDT"].trade_id == 10_030
    assert "SOLUSDT" not in tail


def test_an_empty_topic_means_a_fresh_start(bootstrap: str) -> None:
    topic = unique_topic("raw")
    create_topics(bootstrap, [topic])
    assert read_tail(bootstrap, topic, ["BTCUSDT"]) == {}


def test_a_missing_topic_is_a_clear_error(bootstrap: str) -> None:
    with pytest.raises(TailError, match="not available"):
        read_tail(bootstrap, unique_topic("absent"), ["BTCUSDT"], timeout_s=10)
