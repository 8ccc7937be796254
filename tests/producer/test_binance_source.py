"""The live source against the fake exchange over real HTTP: requests, answers, faults, headers.

The schedule's rules (back-fill order, event-time hold, pauses, back-off, budget) are tested without
a server in test_schedule.py; these tests check that BinanceSource carries them out over HTTP."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from app.common.schema import Trade
from app.common.settings import Settings
from app.producer.binance import HISTORICAL_TRADES_PATH, TRADES_PATH, BinanceSource
from app.producer.metrics import ProducerMetrics
from tests.producer.conftest import away_from_minute_end, drain, ids_of
from tests.support.fake_exchange import FakeExchange

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _source(exchange: FakeExchange, **overrides: Any) -> tuple[BinanceSource, ProducerMetrics]:
    settings = Settings(
        binance_base_url=exchange.base_url, symbols=SYMBOLS, poll_interval_s=0.1, http_timeout_s=0.5
    )
    settings = dataclasses.replace(settings, **overrides)
    metrics = ProducerMetrics(budget_per_minute=settings.weight_budget_per_minute)
    return BinanceSource(settings, metrics, threading.Event(), jitter=lambda: 0.0), metrics


def _at(exchange: FakeExchange, symbol: str, trade_id: int) -> Trade:
    """The exchange's trade with this id, as the raw topic's tail would hold it."""
    raw = next(t for t in exchange.trades(symbol) if t["id"] == trade_id)
    return Trade(trade_id, symbol, Decimal(raw["price"]), Decimal(raw["qty"]), Decimal(0), raw["time"], False)


def _caught_up(exchange: FakeExchange, symbols: tuple[str, ...]) -> Callable[[list[Trade]], bool]:
    """True once the source has given the exchange's newest trade of every symbol."""
    last = {s: exchange.trade_ids(s)[-1] for s in symbols}
    return lambda got: all(ids_of(got, s) and ids_of(got, s)[-1] == last[s] for s in symbols)


def test_fresh_start_takes_the_latest_page_then_every_new_trade_once(exchange: FakeExchange) -> None:
    source, metrics = _source(exchange)
    source.resume({})
    got = drain(source, 5.0, until=_caught_up(exchange, SYMBOLS))
    exchange.start_ticker(trades_per_s=150)
    got += drain(source, 2.0)
    exchange.stop_ticker()
    got += drain(source, 5.0, until=_caught_up(exchange, SYMBOLS))
    for symbol in SYMBOLS:
        ids = ids_of(got, symbol)
        all_ids = exchange.trade_ids(symbol)
        assert ids[0] == all_ids[1500 - 1000], "a fresh start begins with the latest page"
        assert ids == all_ids[all_ids.index(ids[0]) :], f"{symbol}: every id once, in order"
        assert len(ids) > 1000 + 150
    assert metrics.gaps_backfilled == 0
    assert sum(metrics.http_errors.values()) == 0


def test_a_gap_is_back_filled_before_newer_trades(exchange: FakeExchange) -> None:
    source, metrics = _source(exchange, symbols=("BTCUSDT",))
    last_id = exchange.trade_ids("BTCUSDT")[-1]
    source.resume({"BTCUSDT": _at(exchange, "BTCUSDT", last_id)})
    exchange.append("BTCUSDT", count=2600)  # more than a page between two polls
    got = drain(source, 5.0, until=_caught_up(exchange, ("BTCUSDT",)))
    assert ids_of(got, "BTCUSDT") == list(range(last_id + 1, last_id + 2601))
    history = exchange.requests(HISTORICAL_TRADES_PATH)
    assert history[0].params["fromId"] == str(last_id + 1)
    assert metrics.gaps_backfilled == 1


def test_resume_after_downtime_fetches_the_missed_history(exchange: FakeExchange) -> None:
    source, _ = _source(exchange)
    first = exchange.trade_ids("BTCUSDT")[0]
    source.resume({"BTCUSDT": _at(exchange, "BTCUSDT", first + 10)})
    got = drain(source, 5.0, until=_caught_up(exchange, SYMBOLS))
    assert ids_of(got, "BTCUSDT") == exchange.trade_ids("BTCUSDT")[11:]
    assert ids_of(got, "ETHUSDT") == exchange.trade_ids("ETHUSDT")[500:]


@pytest.mark.parametrize(
    ("fault", "counter"),
    [
        ("500", "5xx"),
        ("timeout", "timeout"),
        ("malformed", "malformed"),
        ("bad_trade", "malformed"),
        ("truncated", "malformed"),
    ],
)
def test_each_fault_is_counted_survived_and_loses_nothing(
    exchange: FakeExchange, fault: str, counter: str
) -> None:
    source, metrics = _source(exchange, symbols=("BTCUSDT",))
    last_id = exchange.trade_ids("BTCUSDT")[-1]
    source.resume({"BTCUSDT": _at(exchange, "BTCUSDT", last_id)})
    exchange.append("BTCUSDT", count=300)
    exchange.add_fault(fault, delay_s=1.0, times=2)
    got = drain(source, 8.0, until=_caught_up(exchange, ("BTCUSDT",)))
    assert ids_of(got, "BTCUSDT") == list(range(last_id + 1, last_id + 301))
    assert metrics.http_errors[counter] == 2
    assert sum(metrics.http_errors.values()) == 2
    assert exchange.pending_faults() == 0


def test_a_429_over_http_is_counted_and_its_retry_after_honoured(exchange: FakeExchange) -> None:
    """The pause rules are in test_schedule.py; this checks the header reaches them over real HTTP."""
    source, metrics = _source(exchange)
    source.resume({})
    drain(source, 0.3)
    exchange.add_fault("429", retry_after_s=1)
    exchange.append("BTCUSDT", count=50)
    got = drain(source, 3.0, until=_caught_up(exchange, ("BTCUSDT",)))
    assert metrics.rate_limited_429 == 1
    assert exchange.violations() == []
    log = exchange.requests()
    limited = next(r for r in log if r.status == 429)
    after = [r for r in log if r.time > limited.time]
    assert after, "polling resumed after the pause"
    assert after[0].time - limited.time >= 0.9
    assert ids_of(got, "BTCUSDT")[-50:] == exchange.trade_ids("BTCUSDT")[-50:]


def test_the_used_weight_header_reaches_the_budget(exchange: FakeExchange) -> None:
    """The budget rules are in test_schedule.py; this checks the header is read over real HTTP."""
    away_from_minute_end(1.5)
    exchange.spend_weight(2960)  # another process on the same IP
    source, metrics = _source(exchange, weight_budget_per_minute=3000, poll_interval_s=0.01)
    source.resume({})
    drain(source, 1.0)
    # The first answer says 2985 used: nothing more fits until the next minute.
    assert len(exchange.requests(TRADES_PATH)) == 1
    assert metrics.used_weight_1m == 2985


def test_an_unknown_symbol_is_counted_and_does_not_stop_the_others(exchange: FakeExchange) -> None:
    source, metrics = _source(exchange, symbols=("BTCUSDT", "NOPEUSDT"))
    source.resume({})
    got = drain(source, 1.5)
    assert len(ids_of(got, "BTCUSDT")) == 1000
    assert metrics.http_errors["4xx"] >= 1
