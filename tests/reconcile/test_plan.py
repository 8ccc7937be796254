"""The reconciler's schedule, pure: when a minute is asked for, how minutes are batched, what an
answer settles, and how missing or malformed klines are retried and finally given up."""

from __future__ import annotations

from dataclasses import replace

from app.common.schema import ReconcileStatus, WindowStats
from app.core.windows import WINDOW_MS
from app.reconcile.klines import Kline, KlineAnswer
from app.reconcile.plan import GATHER_MS, MAX_ATTEMPTS, MAX_LIMIT, SETTLE_MS, KlineRequest, Plan
from tests.dashboard.helpers import final, window

T0 = 1_767_225_600_000  # a minute boundary


def closed(start: int, symbol: str = "BTCUSDT") -> WindowStats:
    return final(window(start, ["100.00", "101.00"], symbol=symbol))


def kline_of(w: WindowStats) -> Kline:
    return Kline(w.window_start, w.open, w.high, w.low, w.close, w.base_volume, w.quote_volume, w.trade_count)


def test_a_minute_is_asked_for_only_once_it_is_complete_and_its_batch_gathered() -> None:
    plan = Plan(jitter=lambda: 0.0)
    w = closed(T0)
    arrived = T0 + WINDOW_MS + 10_000 - GATHER_MS  # the job finals it a watermark after its end
    plan.add(w, (0, 5), now_ms=arrived)
    assert plan.next_request(arrived + GATHER_MS - 1) is None
    assert plan.next_request(arrived + GATHER_MS) == KlineRequest("BTCUSDT", (T0,))

    current = Plan(jitter=lambda: 0.0)
    current.add(w, (0, 5), now_ms=T0)  # e.g. a clock behind the job's: the kline is not final yet
    assert current.next_request(T0 + WINDOW_MS + SETTLE_MS - 1) is None
    assert current.next_request(T0 + WINDOW_MS + SETTLE_MS) is not None


def test_a_catch_up_is_batched_up_to_the_limit_per_symbol() -> None:
    plan = Plan(jitter=lambda: 0.0)
    starts = [T0 + i * WINDOW_MS for i in range(MAX_LIMIT + 5)]
    for offset, start in enumerate(starts):
        plan.add(closed(start), (0, offset), now_ms=T0)
    plan.add(closed(T0, "ETHUSDT"), (1, 0), now_ms=T0)
    now = starts[-1] + 2 * WINDOW_MS
    request = plan.next_request(now)
    assert request is not None and request.starts == tuple(starts[:MAX_LIMIT])
    assert request.params == {
        "symbol": "BTCUSDT",
        "interval": "1m",
        "startTime": str(T0),
        "endTime": str(starts[MAX_LIMIT - 1] + WINDOW_MS - 1),
        "limit": str(MAX_LIMIT),
    }
    klines = {s: kline_of(closed(s)) for s in request.starts}
    outcome = plan.on_answer(request, KlineAnswer(klines, {}), now)
    assert len(outcome.records) == MAX_LIMIT
    assert {r.status for r in outcome.records} == {ReconcileStatus.MATCHED}
    assert plan.next_request(now) == KlineRequest("BTCUSDT", tuple(starts[MAX_LIMIT:]))
    assert plan.held_offsets() == {0: MAX_LIMIT, 1: 0}


def test_missing_and_malformed_klines_are_retried_with_backoff_then_unavailable() -> None:
    plan = Plan(jitter=lambda: 0.0)
    a, b, c = closed(T0), closed(T0 + WINDOW_MS), closed(T0 + 2 * WINDOW_MS)
    for offset, w in enumerate((a, b, c)):
        plan.add(w, (0, offset), now_ms=T0)
    now = T0 + 4 * WINDOW_MS
    answer = KlineAnswer({c.window_start: replace(kline_of(c), trade_count=3)}, {b.window_start: "a float"})
    first = plan.on_answer(plan.next_request(now) or KlineRequest("X", ()), answer, now)
    assert (first.missing, first.malformed, first.retries) == (1, 1, 2)
    assert [(r.window_start, r.status) for r in first.records] == [
        (c.window_start, ReconcileStatus.MISMATCHED)
    ]
    assert plan.next_request(now) is None, "backing off"
    assert plan.next_request(now + 1000) == KlineRequest("BTCUSDT", (a.window_start, b.window_start))
    assert plan.held_offsets() == {0: 0}

    records = []
    for _ in range(MAX_ATTEMPTS - 1):
        now += 60_000
        request = plan.next_request(now)
        assert request is not None
        records += plan.on_failure(request, "HTTP 500", now, malformed=False).records
    assert [(r.status, r.reason) for r in records] == [
        (ReconcileStatus.UNAVAILABLE, f"HTTP 500 (after {MAX_ATTEMPTS} attempts)")
    ] * 2
    assert plan.pending() == 0 and plan.held_offsets() == {}


def test_a_repeated_final_window_keeps_its_oldest_offset_and_newest_values() -> None:
    plan = Plan(jitter=lambda: 0.0)
    w = closed(T0)
    again = final(window(T0, ["100.00", "101.00", "102.00"]))
    plan.add(w, (0, 9), now_ms=T0)
    plan.add(again, (0, 12), now_ms=T0)
    now = T0 + 2 * WINDOW_MS
    request = plan.next_request(now)
    assert request is not None and plan.held_offsets() == {0: 9}
    (record,) = plan.on_answer(request, KlineAnswer({T0: kline_of(again)}, {}), now).records
    assert record.status is ReconcileStatus.MATCHED
