"""The WebSocket source end to end: a real WebSocket server and the fake exchange on loopback, the
producer's run loop, the real broker. Every stream fault must leave each id in the raw topic exactly
once, in order, and be counted. StreamOrder's rules are tested without a server in
test_stream_order.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest

from app.common.schema import Trade
from app.common.settings import Settings
from app.producer.binance_ws import BinanceStreamSource
from app.producer.metrics import ProducerMetrics
from app.producer.source import TradeSource
from tests.producer.conftest import drain, ids_of
from tests.producer.kafka_helpers import (
    assert_exactly_once,
    end_offset_total,
    published_ids,
    running_service,
    wait_for,
)
from tests.support.fake_exchange import HISTORICAL_TRADES_PATH, TRADES_PATH, FakeExchange
from tests.support.fake_ws import FakeStream
from tests.support.kafka import create_topics, unique_topic

SYMBOLS = ("BTCUSDT", "ETHUSDT")
FIRST_ID = 1_000_000
BUDGET = 3000
SILENCE_S = 1.5


@pytest.fixture
def market() -> Iterator[tuple[FakeExchange, FakeStream]]:
    # The stream pings every 0.3 s and drops a client that has not answered within 0.3 s more: a
    # source that did not answer pings would show as extra connections.
    with (
        FakeExchange(symbols=SYMBOLS, initial_trades=0, first_id=FIRST_ID) as exchange,
        FakeStream(exchange, ping_interval_s=0.3) as stream,
    ):
        yield exchange, stream


def _settings(bootstrap: str, exchange: FakeExchange, stream: FakeStream) -> Settings:
    raw, metrics = unique_topic("raw"), unique_topic("metrics")
    create_topics(bootstrap, [raw], partitions=2)
    create_topics(bootstrap, [metrics])
    return replace(
        _settings_without_kafka(exchange, stream),
        kafka_bootstrap_servers=bootstrap,
        raw_topic=raw,
        metrics_topic=metrics,
    )


Live = tuple[FakeExchange, FakeStream, Settings]


@pytest.fixture
def live(bootstrap: str, market: tuple[FakeExchange, FakeStream]) -> Live:
    """The market, and the producer's settings for it on fresh topics."""
    exchange, stream = market
    return exchange, stream, _settings(bootstrap, exchange, stream)


def _ws(settings: Settings) -> Callable[[ProducerMetrics, threading.Event], TradeSource]:
    def make(metrics: ProducerMetrics, stop: threading.Event) -> TradeSource:
        return BinanceStreamSource(settings, metrics, stop, jitter=lambda: 0.0)

    return make


@contextmanager
def _service(settings: Settings, stream: FakeStream) -> Iterator[ProducerMetrics]:
    """The producer's run loop on the stream, from the moment it has connected."""
    before = stream.connections()
    with running_service(settings, _ws(settings)) as metrics:
        wait_for(lambda: stream.connections() > before, 10, "the stream")
        yield metrics


def _append_to_every_symbol(exchange: FakeExchange, count: int) -> None:
    for symbol in SYMBOLS:
        exchange.append(symbol, count=count)


def _market(exchange: FakeExchange, seconds: float, per_s: float = 100) -> None:
    exchange.start_ticker(trades_per_s=per_s)
    time.sleep(seconds)
    exchange.stop_ticker()


def _every_id_once(settings: Settings, exchange: FakeExchange) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    served = sum(len(exchange.trade_ids(s)) for s in SYMBOLS)
    wait_for(
        lambda: end_offset_total(bootstrap, settings.raw_topic) >= served, 30, f"{served} trades published"
    )
    time.sleep(0.5)  # a duplicate would land by now
    by_symbol = published_ids(bootstrap, settings.raw_topic)
    for symbol in SYMBOLS:
        assert_exactly_once(by_symbol[symbol], FIRST_ID, exchange.trade_ids(symbol)[-1])


# (fault, times, the counter or request log that must show it)
STREAM_FAULTS: dict[str, tuple[int, Callable[[ProducerMetrics, FakeExchange], bool]]] = {
    "drop": (1, lambda m, e: m.stream_connects >= 2 and len(e.requests(TRADES_PATH)) >= 1),
    "expire": (1, lambda m, e: m.stream_connects >= 2 and len(e.requests(TRADES_PATH)) >= 1),
    "stall": (1, lambda m, e: m.stream_connects >= 2 and len(e.requests(TRADES_PATH)) >= 1),
    "skip": (5, lambda m, e: m.gaps_backfilled >= 1 and len(e.requests(HISTORICAL_TRADES_PATH)) >= 1),
    "malformed": (2, lambda m, _e: m.stream_malformed_frames == 2),
    "unknown_symbol": (2, lambda m, _e: m.stream_unknown_symbol_frames == 2),
    "repeat": (2, lambda m, _e: m.stream_out_of_order_frames == 2),
}


@pytest.mark.parametrize("fault", list(STREAM_FAULTS))
def test_a_stream_fault_loses_and_doubles_nothing_and_is_counted(live: Live, fault: str) -> None:
    exchange, stream, settings = live
    times, counted = STREAM_FAULTS[fault]
    with _service(settings, stream) as metrics:
        _market(exchange, 1.0)
        stream.add_fault(fault, times=times)
        _market(exchange, SILENCE_S + 2.0 if fault == "stall" else 1.5)
        wait_for(lambda: stream.pending_faults() == 0, 10, "the faults to be served")
        _market(exchange, 1.0)
        _every_id_once(settings, exchange)
        assert counted(metrics, exchange), f"{fault} not counted: {metrics.snapshot(0)}"
    assert exchange.violations() == []
    assert exchange.max_weight_per_minute() <= BUDGET


def test_no_fault_no_reconnect_no_rest_and_pings_are_answered(live: Live) -> None:
    exchange, stream, settings = live
    with _service(settings, stream) as metrics:
        _market(exchange, 1.0)
        time.sleep(1.2)  # quiet, short of the silence limit: four pings, each answered
        _market(exchange, 1.0)
        _every_id_once(settings, exchange)
        assert metrics.stream_connects == 1
        assert stream.connections() == 1
    assert exchange.requests() == [], "a fresh start on an undisturbed stream needs no REST"


def test_a_back_fill_answered_429_waits_for_retry_after(live: Live) -> None:
    exchange, stream, settings = live
    with _service(settings, stream) as metrics:
        _market(exchange, 0.5)
        exchange.add_fault("429", retry_after_s=1, path=HISTORICAL_TRADES_PATH)
        stream.add_fault("skip", times=3)
        _market(exchange, 2.5)
        _every_id_once(settings, exchange)
        assert metrics.rate_limited_429 == 1
        assert metrics.gaps_backfilled >= 1
    assert exchange.violations() == []


def test_a_restart_resumes_from_the_raw_topics_tail_with_a_long_back_fill(live: Live) -> None:
    exchange, stream, settings = live
    with _service(settings, stream) as metrics:
        _market(exchange, 1.0)
        served = sum(len(exchange.trade_ids(s)) for s in SYMBOLS)
        wait_for(lambda: metrics.trades_published >= served, 20, "the first trades")
    _append_to_every_symbol(exchange, 2500)  # while down: more than two pages of history
    with _service(settings, stream) as metrics:
        _market(exchange, 1.0)
        _every_id_once(settings, exchange)
        assert metrics.gaps_backfilled >= 2  # one per symbol
    history = exchange.requests(HISTORICAL_TRADES_PATH)
    assert len(history) >= 2 * 2
    assert exchange.max_weight_per_minute() <= BUDGET


def _alone(
    exchange: FakeExchange, stream: FakeStream
) -> tuple[BinanceStreamSource, ProducerMetrics, list[Trade]]:
    """The source without Kafka, started afresh; what it gave until its stream connected."""
    settings = _settings_without_kafka(exchange, stream)
    metrics = ProducerMetrics(budget_per_minute=BUDGET)
    source = BinanceStreamSource(settings, metrics, threading.Event(), jitter=lambda: 0.0)
    source.resume({})
    return source, metrics, drain(source, 30.0, until=lambda _got: stream.connections() >= 1)


def _settings_without_kafka(exchange: FakeExchange, stream: FakeStream) -> Settings:
    return Settings(
        symbols=SYMBOLS,
        source="binance_ws",
        binance_base_url=exchange.base_url,
        binance_ws_url=stream.url,
        stream_silence_s=SILENCE_S,
        http_timeout_s=1.0,
        weight_budget_per_minute=BUDGET,
    )


@pytest.mark.parametrize("fault", ["drop", "skip", "malformed"])
def test_the_source_alone_gives_every_id_once_through_a_fault(
    market: tuple[FakeExchange, FakeStream], fault: str
) -> None:
    """The source without Kafka (quick, and where each fault's effect is easiest to see)."""
    exchange, stream = market
    source, metrics, got = _alone(exchange, stream)
    _append_to_every_symbol(exchange, 20)
    # A fresh start begins at the first frame: the fault comes after it.
    got += drain(source, 30.0, until=lambda more: all(ids_of(got + more, s) for s in SYMBOLS))
    stream.add_fault(fault, times=3)
    for _ in range(10):
        _append_to_every_symbol(exchange, 20)
        got += drain(source, 0.2)
    last = {s: exchange.trade_ids(s)[-1] for s in SYMBOLS}
    got += drain(
        source, 10.0, until=lambda more: all(ids_of(got + more, s)[-1:] == [last[s]] for s in SYMBOLS)
    )
    source.close()
    for symbol in SYMBOLS:
        assert ids_of(got, symbol) == exchange.trade_ids(symbol), f"{symbol}: every id once, in order"
    assert {"drop": metrics.stream_connects >= 2, "skip": metrics.gaps_backfilled >= 1,
            "malformed": metrics.stream_malformed_frames == 3}[fault], metrics.snapshot(0)  # fmt: skip


def test_trades_missed_while_reconnecting_go_out_though_the_market_then_goes_quiet(
    market: tuple[FakeExchange, FakeStream],
) -> None:
    """No later frame reveals the hole: only the REST check after the reconnect can."""
    exchange, stream = market
    source, metrics, got = _alone(exchange, stream)
    _append_to_every_symbol(exchange, 5)
    got += drain(source, 30.0, until=lambda more: all(len(ids_of(got + more, s)) == 5 for s in SYMBOLS))
    stream.add_fault("drop")
    _append_to_every_symbol(exchange, 10)  # the first cuts the connection; none is streamed
    got += drain(source, 30.0, until=lambda more: all(len(ids_of(got + more, s)) == 15 for s in SYMBOLS))
    source.close()
    for symbol in SYMBOLS:
        assert ids_of(got, symbol) == exchange.trade_ids(symbol)
    assert metrics.stream_connects == 2
    assert len(exchange.requests(TRADES_PATH)) == 2  # one check per symbol
