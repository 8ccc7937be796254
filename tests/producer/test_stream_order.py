"""The WebSocket source's pure sequencing: every id once, in order, holes back-filled first."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from app.common.schema import Trade
from app.producer.schedule import HISTORICAL_TRADES_PATH, TRADES_PATH, Answer, Now, Request, Wait
from app.producer.stream_order import Dropped, StreamOrder

T0 = 1_700_000_000_000


def rest_trade(trade_id: int) -> dict[str, Any]:
    return {
        "id": trade_id,
        "price": "100.00000000",
        "qty": "0.50000000",
        "quoteQty": "50",
        "time": T0 + trade_id,
        "isBuyerMaker": trade_id % 2 == 0,
        "isBestMatch": True,
    }


def frame(trade_id: int, symbol: str = "BTCUSDT", time_ms: int | None = None) -> str:
    event = {
        "e": "trade",
        "E": T0,
        "s": symbol,
        "t": trade_id,
        "p": "100.00000000",
        "q": "0.50000000",
        "T": T0 + trade_id if time_ms is None else time_ms,
        "m": trade_id % 2 == 0,
        "M": True,
    }
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": event})


def ok(ids: range) -> Answer:
    return Answer(200, json.dumps([rest_trade(i) for i in ids]).encode(), {"X-MBX-USED-WEIGHT-1M": "25"})


def now(mono_s: float = 100.0) -> Now:
    return Now(wall_ms=T0 + int(mono_s * 1000), mono_s=mono_s)


def tail(trade_id: int, symbol: str = "BTCUSDT") -> Trade:
    return Trade(trade_id, symbol, Decimal(1), Decimal(1), Decimal(1), T0 + trade_id, False)


def order(symbols: tuple[str, ...] = ("BTCUSDT",), lead_ms: int = 10**9) -> StreamOrder:
    return StreamOrder(symbols, budget_per_minute=3000, lead_ms=lead_ms, jitter=lambda: 0.5)


def drain(stream: StreamOrder, answers: dict[str, Any], at: float = 100.0) -> tuple[list[int], list[Request]]:
    """Run next_step until it waits, answering requests from `answers` (path -> callable(params))."""
    ids: list[int] = []
    requests: list[Request] = []
    for _ in range(50):
        step = stream.next_step(now(at))
        if isinstance(step, Wait):
            return ids, requests
        if isinstance(step, list):
            ids += [t.trade_id for t in step]
            continue
        requests.append(step)
        outcome = stream.on_answer(step, answers[step.path](step.params), now(at))
        ids += [t.trade_id for t in outcome.released]
    raise AssertionError("never settled")


def test_a_fresh_start_releases_the_stream_from_its_first_frame() -> None:
    stream = order()
    stream.resume({})
    for trade_id in (10, 11, 12):
        assert stream.on_frame(frame(trade_id), T0) is None
    ids, requests = drain(stream, {})
    assert ids == [10, 11, 12]
    assert requests == []


def test_bad_frames_are_dropped_and_say_why() -> None:
    stream = order()
    stream.resume({})
    assert stream.on_frame(frame(10), T0) is None
    assert stream.on_frame("{not json", T0) is Dropped.MALFORMED
    assert stream.on_frame(json.dumps({"stream": "x", "data": {"e": "trade", "s": "BTCUSDT"}}), T0) is (
        Dropped.MALFORMED
    )
    assert stream.on_frame(frame(11, symbol="DOGEUSDT"), T0) is Dropped.UNKNOWN_SYMBOL
    assert stream.on_frame(frame(10), T0) is Dropped.NOT_INCREASING
    assert stream.on_frame(frame(9), T0) is Dropped.NOT_INCREASING
    assert stream.on_frame(frame(11), T0) is None
    assert drain(stream, {})[0] == [10, 11]


def test_a_skipped_id_is_back_filled_before_anything_newer_goes_out() -> None:
    stream = order()
    stream.resume({})
    stream.on_frame(frame(10), T0)
    assert drain(stream, {})[0] == [10]
    stream.on_frame(frame(14), T0)
    stream.on_frame(frame(15), T0)
    ids, requests = drain(stream, {HISTORICAL_TRADES_PATH: lambda p: ok(range(int(p["fromId"]), 16))})
    assert ids == [11, 12, 13, 14, 15]
    assert [(r.path, r.params["fromId"]) for r in requests] == [(HISTORICAL_TRADES_PATH, "11")]


def test_a_reconnect_confirms_over_rest_even_when_the_next_frame_continues() -> None:
    stream = order()
    stream.resume({"BTCUSDT": tail(20)})
    # Nothing held yet: /trades says what happened while no connection was open.
    ids, requests = drain(stream, {TRADES_PATH: lambda _p: ok(range(15, 24))})
    assert ids == [21, 22, 23]
    assert [r.path for r in requests] == [TRADES_PATH]
    # The stream overlaps what REST gave: dropped silently, then it carries on.
    for trade_id in (22, 23, 24, 25):
        assert stream.on_frame(frame(trade_id), T0) is None
    assert drain(stream, {})[0] == [24, 25]


def test_a_reconnect_with_a_hole_longer_than_a_page_back_fills_page_by_page() -> None:
    stream = order()
    stream.resume({"BTCUSDT": tail(100)})
    newest = 2600

    def history(params: dict[str, str]) -> Answer:
        start = int(params["fromId"])
        return ok(range(start, min(start + 1000, newest + 1)))

    ids, requests = drain(
        stream, {TRADES_PATH: lambda _p: ok(range(newest - 999, newest + 1)), HISTORICAL_TRADES_PATH: history}
    )
    assert ids == list(range(101, newest + 1))
    assert [r.path for r in requests] == [
        TRADES_PATH,
        HISTORICAL_TRADES_PATH,
        HISTORICAL_TRADES_PATH,
        TRADES_PATH,
    ]


def test_frames_during_a_back_fill_wait_for_it() -> None:
    stream = order()
    stream.resume({"BTCUSDT": tail(20)})
    stream.on_frame(frame(30), T0)
    step = stream.next_step(now())
    assert isinstance(step, Request) and step.path == HISTORICAL_TRADES_PATH
    assert step.params["fromId"] == "21"
    stream.on_frame(frame(31), T0)  # arrives while the request is out
    outcome = stream.on_answer(step, ok(range(21, 31)), now())
    assert [t.trade_id for t in outcome.released] == list(range(21, 32))


def test_ids_the_exchange_no_longer_has_are_counted_once_and_skipped() -> None:
    stream = order()
    stream.resume({"BTCUSDT": tail(20)})
    stream.on_frame(frame(30), T0)
    step = stream.next_step(now())
    assert isinstance(step, Request)
    outcome = stream.on_answer(step, ok(range(25, 31)), now())
    assert outcome.unrecoverable_gap
    assert [t.trade_id for t in outcome.released] == list(range(25, 31))


def test_429_pauses_every_request_for_retry_after() -> None:
    stream = order()
    stream.resume({"BTCUSDT": tail(20)})
    step = stream.next_step(now(100.0))
    assert isinstance(step, Request)
    outcome = stream.on_answer(step, Answer(429, b"{}", {"Retry-After": "3"}), now(100.0))
    assert outcome.rate_limited_429
    assert isinstance(stream.next_step(now(102.5)), Wait)
    assert isinstance(stream.next_step(now(103.1)), Request)


def test_a_failed_request_backs_off_and_is_counted() -> None:
    stream = order()
    stream.resume({"BTCUSDT": tail(20)})
    step = stream.next_step(now(100.0))
    assert isinstance(step, Request)
    outcome = stream.on_answer(step, Answer(200, b"<html>", {}), now(100.0))
    assert outcome.http_error == "malformed"
    assert isinstance(stream.next_step(now(100.1)), Wait)
    assert isinstance(stream.next_step(now(101.0)), Request)


def test_a_symbol_back_filling_holds_the_others_back_in_event_time() -> None:
    stream = order(("BTCUSDT", "ETHUSDT"), lead_ms=1_000)
    stream.resume({"BTCUSDT": tail(20), "ETHUSDT": tail(20, "ETHUSDT")})
    stream.on_frame(frame(21, "ETHUSDT"), T0)
    stream.on_frame(frame(22, "ETHUSDT", time_ms=T0 + 50_000), T0)
    stream.on_frame(frame(30), T0)
    # ETH 21 joins up and is close to BTC's last trade; ETH 22 is far ahead and waits for BTC.
    first = stream.next_step(now())
    assert isinstance(first, list) and [t.trade_id for t in first] == [21]
    step = stream.next_step(now())
    assert isinstance(step, Request) and step.symbol == "BTCUSDT"
    outcome = stream.on_answer(step, ok(range(21, 30)), now())
    assert [t.trade_id for t in outcome.released] == list(range(21, 31))
    assert drain(stream, {})[0] == [22]
