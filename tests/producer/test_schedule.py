"""The producer's polling schedule as a pure state machine: no server, no clock, no sleep.

`Book` answers requests the way Binance does from an in-memory trade list, and `run` drives a
schedule against it on a simulated clock, jumping over every wait.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from app.common.schema import Trade
from app.producer.schedule import (
    DEFAULT_BAN_S,
    HISTORICAL_TRADES_PATH,
    PAGE_SIZE,
    STALLED_AFTER_FAILURES,
    TRADES_PATH,
    USED_WEIGHT_HEADER,
    Answer,
    Failure,
    Now,
    Outcome,
    Request,
    Schedule,
    Wait,
)

T0 = 1_736_942_400_000  # a minute boundary
A, B = "BTCUSDT", "ETHUSDT"


def at(seconds: float) -> Now:
    """`seconds` after T0 on both clocks."""
    return Now(wall_ms=T0 + round(seconds * 1000), mono_s=seconds)


def trade(symbol: str, trade_id: int, time_ms: int) -> Trade:
    return Trade(trade_id, symbol, Decimal("1.5"), Decimal("2"), Decimal("3"), time_ms, False)


def answer(trades: Iterable[Trade], status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    body = [
        {
            "id": t.trade_id,
            "price": str(t.price),
            "qty": str(t.qty),
            "quoteQty": str(t.quote_qty),
            "time": t.trade_time,
            "isBuyerMaker": t.is_buyer_maker,
            "isBestMatch": True,
        }
        for t in trades
    ]
    return Answer(status, json.dumps(body).encode(), headers or {})


def approx(seconds: float) -> float:
    """A wait of about this long (float arithmetic on the simulated clock)."""
    return pytest.approx(seconds)  # type: ignore[return-value]


def ids(trades: Iterable[Trade], symbol: str = A) -> list[int]:
    return [t.trade_id for t in trades if t.symbol == symbol]


@dataclass
class Book:
    """The exchange's trades per symbol, answered like /trades and /historicalTrades."""

    trades: dict[str, list[Trade]] = field(default_factory=dict)

    def add(self, symbol: str, count: int, first_time_ms: int, step_ms: int = 10) -> list[Trade]:
        book = self.trades.setdefault(symbol, [])
        first_id = book[-1].trade_id + 1 if book else 1
        added = [trade(symbol, first_id + i, first_time_ms + i * step_ms) for i in range(count)]
        book.extend(added)
        return added

    def answer(self, request: Request) -> Answer:
        book = self.trades[request.symbol]
        if request.path == HISTORICAL_TRADES_PATH:
            start = int(request.params["fromId"]) - book[0].trade_id
            return answer(book[max(start, 0) : max(start, 0) + PAGE_SIZE])
        return answer(book[-PAGE_SIZE:])


@dataclass
class Run:
    released: list[Trade] = field(default_factory=list)
    requests: list[tuple[float, Request]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    now_s: float = 0.0


def run(
    schedule: Schedule,
    respond: Callable[[Request], Answer | Failure],
    *,
    start_s: float = 0.0,
    until: Callable[[Run], bool],
    max_steps: int = 1000,
) -> Run:
    """Drive the schedule, jumping the clock over every wait, until `until(run)` holds."""
    done = Run(now_s=start_s)
    for _ in range(max_steps):
        if until(done):
            return done
        step = schedule.next_step(at(done.now_s))
        if isinstance(step, Wait):
            assert step.seconds > 0
            done.now_s += step.seconds
        elif isinstance(step, Request):
            done.requests.append((done.now_s, step))
            outcome = schedule.on_answer(step, respond(step), at(done.now_s))
            done.outcomes.append(outcome)
            done.released += outcome.released
        else:
            done.released += step
    raise AssertionError(f"not done after {max_steps} steps: {len(done.released)} released")


def schedule(
    symbols: tuple[str, ...] = (A,), *, lead_ms: int = 5_000, budget: int = 3000, poll_s: float = 1.0
) -> Schedule:
    return Schedule(
        symbols, poll_interval_s=poll_s, budget_per_minute=budget, lead_ms=lead_ms, jitter=lambda: 0.0
    )


def request(machine: Schedule, now: Now) -> Request:
    step = machine.next_step(now)
    assert isinstance(step, Request), step
    return step


def caught_up(book: Book, *symbols: str) -> Callable[[Run], bool]:
    last = {s: book.trades[s][-1].trade_id for s in symbols}
    return lambda r: all(ids(r.released, s)[-1:] == [last[s]] for s in symbols)


# ------------------------------------------------------------------------------ continuity


def test_fresh_start_takes_the_latest_page_then_only_new_trades() -> None:
    book = Book()
    book.add(A, 1500, T0 - 60_000)
    machine = schedule()
    machine.resume({})
    first = run(machine, book.answer, until=caught_up(book, A))
    assert ids(first.released) == list(range(501, 1501))

    quiet = run(machine, book.answer, until=lambda r: len(r.requests) == 2)
    # A full page may hide more: it is asked again at once, then once per poll interval.
    assert [t for t, _ in quiet.requests] == [0.0, 1.0]
    assert quiet.released == []

    book.add(A, 7, T0 - 1_000)
    later = run(machine, book.answer, start_s=quiet.now_s, until=caught_up(book, A))
    assert ids(later.released) == list(range(1501, 1508))
    assert [t for t, _ in later.requests] == [2.0]


def test_a_gap_is_back_filled_by_id_before_newer_trades() -> None:
    book = Book()
    book.add(A, 1500, T0 - 200_000)
    machine = schedule()
    machine.resume({A: book.trades[A][-1]})
    book.add(A, 2600, T0 - 100_000)  # /trades' oldest id (2501) is past the last published (1500)

    done = run(machine, book.answer, until=caught_up(book, A))

    assert ids(done.released) == list(range(1501, 4101)), "every id once, in order"
    assert [r.path for _, r in done.requests] == [
        TRADES_PATH,
        HISTORICAL_TRADES_PATH,
        HISTORICAL_TRADES_PATH,
        TRADES_PATH,
    ]
    assert [r.params.get("fromId") for _, r in done.requests[1:3]] == ["1501", "2501"]
    assert not done.outcomes[0].released, "nothing of the newest page goes out before the hole is filled"
    assert [o.gap_backfilled for o in done.outcomes] == [False, False, True, False]
    assert {t for t, _ in done.requests} == {0.0}, "a back-fill asks again at once"


def test_ids_binance_no_longer_has_are_reported_and_skipped() -> None:
    machine = schedule()
    machine.resume({A: trade(A, 1000, T0 - 100_000)})
    latest = request(machine, at(0))
    machine.on_answer(latest, answer(trade(A, i, T0 - 50_000 + i) for i in range(2001, 3001)), at(0))
    history = request(machine, at(0))
    assert history.params["fromId"] == "1001"

    outcome = machine.on_answer(
        history, answer(trade(A, i, T0 - 90_000 + i) for i in range(1501, 2501)), at(0)
    )

    assert outcome.unrecoverable_gap
    assert outcome.gap_backfilled
    assert ids(outcome.released + drain(machine)) == list(range(1501, 2501))


def test_a_full_page_is_followed_at_once_a_partial_one_after_the_poll_interval() -> None:
    machine = schedule(poll_s=2.0)
    machine.resume({A: trade(A, 1000, T0 - 100_000)})
    full = request(machine, at(0))
    machine.on_answer(full, answer(trade(A, i, T0 - 10_000) for i in range(1001, 2001)), at(0))
    partial = request(machine, at(0))
    machine.on_answer(partial, answer(trade(A, i, T0 - 5_000) for i in range(1500, 2010)), at(0.1))
    assert machine.next_step(at(1.0)) == Wait(approx(1.1))
    assert isinstance(machine.next_step(at(2.1)), Request)


# ------------------------------------------------------------------------- event-time hold


def test_a_symbol_ahead_in_event_time_is_held_until_the_others_catch_up() -> None:
    """The job's watermark is shared by all symbols: had A gone out 60 s ahead of B, B's older
    trades would be late and dropped from the aggregates."""
    behind = T0 - 200_000
    machine = schedule((A, B), lead_ms=5_000)
    machine.resume({A: trade(A, 100, behind), B: trade(B, 100, behind)})

    first = request(machine, at(0))
    assert first.symbol == A
    a_trades = [trade(A, 100 + i, behind + 1_000 * i) for i in range(1, 61)]
    held = machine.on_answer(first, answer(a_trades), at(0))

    assert ids(held.released) == [101, 102, 103, 104, 105], "only up to B's published time + the lead"
    assert machine.next_step(at(0)) == request_for(B)
    b_trades = [trade(B, 101, behind + 30_000)]
    caught = machine.on_answer(request_for(B), answer(b_trades), at(0))
    everything = caught.released + drain(machine)
    assert ids(everything, A) == list(range(106, 161))
    assert ids(everything, B) == [101]


def request_for(symbol: str) -> Request:
    return Request(symbol, TRADES_PATH, {"symbol": symbol, "limit": str(PAGE_SIZE)}, T0)


def drain(machine: Schedule) -> list[Trade]:
    out: list[Trade] = []
    while batch := machine.release():
        out += batch
    return out


def test_of_the_symbols_due_the_least_complete_goes_first_else_the_one_due_soonest() -> None:
    machine = schedule((A, B, "XRPUSDT"), poll_s=10.0)
    machine.resume({A: trade(A, 1, T0 - 1_000), B: trade(B, 1, T0 - 90_000)})
    order: list[str] = []
    for answered_at in (5.0, 2.0, 1.0):
        step = request(machine, at(0))
        order.append(step.symbol)
        machine.on_answer(step, answer([trade(step.symbol, 2, T0 - 500)]), at(answered_at))
        drain(machine)
    assert order == ["XRPUSDT", B, A], "never fetched first, then the one furthest behind"
    assert machine.next_step(at(3)) == Wait(approx(8.0)), "A is due at 11 s, before B at 12 s"


def test_a_catch_up_of_two_symbols_stays_within_the_lead_in_event_time() -> None:
    book = Book()
    behind = T0 - 200_000
    for symbol in (A, B):
        book.add(symbol, 1, behind)
        book.add(symbol, 2500, behind + 60, step_ms=60)  # 150 s of trades, 2.5 pages each
    machine = schedule((A, B), lead_ms=5_000)
    machine.resume({s: book.trades[s][0] for s in (A, B)})

    done = run(machine, book.answer, until=caught_up(book, A, B))

    newest = 0
    for t in done.released:
        assert t.trade_time >= newest - 5_000, f"{t} went out after {newest}, beyond the lead"
        newest = max(newest, t.trade_time)
    for symbol in (A, B):
        assert ids(done.released, symbol) == list(range(2, 2502))
    assert sum(o.gap_backfilled for o in done.outcomes) == 2


def test_a_stalled_symbol_stops_holding_the_others_after_repeated_failures() -> None:
    behind = T0 - 200_000
    machine = schedule((A, B), lead_ms=5_000)
    machine.resume({A: trade(A, 100, behind), B: trade(B, 100, behind)})
    machine.on_answer(
        request(machine, at(0)), answer(trade(A, 100 + i, behind + 10_000 * i) for i in range(1, 4)), at(0)
    )
    assert machine.release() == []

    def respond(request: Request) -> Answer:
        if request.symbol == A:  # nothing new
            return answer(trade(A, 100 + i, behind + 10_000 * i) for i in range(1, 4))
        return Answer(500, b'{"code":-1000}', {})

    def failed(r: Run) -> bool:
        return bool(r.outcomes) and r.outcomes[-1].http_error == "5xx"

    now = 0.0
    for failures in range(1, STALLED_AFTER_FAILURES + 1):
        done = run(machine, respond, start_s=now, until=failed)
        now = done.now_s
        if failures < STALLED_AFTER_FAILURES:
            assert done.released == [], f"still held after {failures} failures"
    assert ids(done.released + drain(machine)) == [101, 102, 103]


# --------------------------------------------------------------------- pauses and back-off


def test_429_pauses_every_symbol_for_retry_after() -> None:
    machine = schedule((A, B))
    machine.resume({})
    limited = machine.on_answer(request(machine, at(1)), answer([], 429, {"Retry-After": "2"}), at(1))
    assert limited.rate_limited_429
    for t in (1.0, 1.5, 2.999):
        step = machine.next_step(at(t))
        assert step == Wait(approx(3 - t)), f"sent during the pause at {t}: {step}"
    assert isinstance(machine.next_step(at(3)), Request)


def test_418_stops_all_polling_for_the_ban_and_assumes_two_minutes_without_retry_after() -> None:
    machine = schedule((A, B))
    machine.resume({})
    banned = machine.on_answer(request(machine, at(0)), answer([], 418), at(0))
    assert banned.banned_418
    assert machine.next_step(at(0)) == Wait(DEFAULT_BAN_S)
    assert machine.next_step(at(DEFAULT_BAN_S - 0.001)) == Wait(approx(0.001))
    assert isinstance(machine.next_step(at(DEFAULT_BAN_S)), Request)


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (Failure("timeout", "no answer in 0.5s"), "timeout"),
        (Failure("connection", "refused"), "connection"),
        (Failure("malformed", "truncated body"), "malformed"),
        (Answer(503, b"busy", {}), "5xx"),
        (Answer(400, b'{"code":-1121}', {}), "4xx"),
        (Answer(200, b"<html>Bad gateway", {}), "malformed"),
        (answer([trade(A, 7, T0), trade(A, 6, T0)]), "malformed"),
    ],
)
def test_failures_back_off_exponentially_and_ask_for_the_same_ids_again(
    failure: Answer | Failure, kind: str
) -> None:
    machine = schedule()
    machine.resume({A: trade(A, 1000, T0 - 100_000)})
    first = request(machine, at(0))
    waits: list[float] = []
    now = 0.0
    for _ in range(3):
        outcome = machine.on_answer(request(machine, at(now)) if waits else first, failure, at(now))
        assert outcome.http_error == kind
        assert outcome.released == []
        step = machine.next_step(at(now))
        assert isinstance(step, Wait)
        waits.append(step.seconds)
        now += step.seconds
    assert waits == [0.25, 0.5, 1.0], "base 0.5 s doubling, half of it fixed (jitter 0)"
    again = request(machine, at(now))
    assert again.params == first.params
    fine = machine.on_answer(again, answer(trade(A, i, T0 - 1_000) for i in (1001, 1002)), at(now))
    assert ids(fine.released) == [1001, 1002]


def test_a_success_resets_the_back_off() -> None:
    machine = schedule(poll_s=1.0)
    machine.resume({A: trade(A, 1000, T0 - 100_000)})
    for now in (0.0, 0.25):
        machine.on_answer(request(machine, at(now)), Failure("timeout", "slow"), at(now))
    machine.on_answer(request(machine, at(0.75)), answer([trade(A, 1001, T0)]), at(0.75))
    machine.on_answer(request(machine, at(1.75)), Failure("timeout", "slow"), at(1.75))
    assert machine.next_step(at(1.75)) == Wait(0.25)


# ---------------------------------------------------------------------- the weight budget


def test_an_exhausted_budget_waits_for_the_next_minute() -> None:
    book = Book()
    book.add(A, 1, T0 - 300_000)
    book.add(A, 8000, T0 - 290_000)  # a back-fill of nine pages wants to go as fast as it can
    machine = schedule(budget=100)
    machine.resume({A: book.trades[A][0]})

    done = run(machine, book.answer, start_s=10.0, until=lambda r: len(r.requests) == 5)

    times = [t for t, _ in done.requests]
    assert times[:4] == [10.0] * 4, "four requests of weight 25 fit a budget of 100"
    assert times[4] == 60.0, "the fifth waits for the next weight minute"
    assert [r.path for _, r in done.requests[:4]] == [TRADES_PATH] + [HISTORICAL_TRADES_PATH] * 3
    assert ids(done.released[:3000]) == list(range(2, 3002))
    assert done.outcomes[3].used_weight_1m == 100


def test_the_budget_follows_the_servers_count_of_other_clients() -> None:
    machine = schedule(budget=3000, poll_s=0.01)
    machine.resume({})
    outcome = machine.on_answer(
        request(machine, at(5)), answer([trade(A, 1, T0)], 200, {"X-MBX-USED-WEIGHT-1M": "2985"}), at(5)
    )
    assert USED_WEIGHT_HEADER == "X-MBX-USED-WEIGHT-1M"
    assert outcome.used_weight_1m == 2985
    due = 5 + machine.poll_interval_s
    assert machine.next_step(at(due)) == Wait(approx(60 - due)), "2985 + 25 > 3000: wait for the minute"
    assert isinstance(machine.next_step(at(60)), Request)


def test_polling_is_spread_out_when_it_would_eat_the_budget() -> None:
    assert schedule((A, B, "XRPUSDT", "SOLUSDT"), poll_s=1.0).poll_interval_s == pytest.approx(2.5)
    assert schedule((A,), poll_s=1.0).poll_interval_s == 1.0
