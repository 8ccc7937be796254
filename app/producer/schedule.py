"""The live source's decision procedure: which request next, when, and which trades may go out.

A pure state machine, so every rule is testable without a server or a clock: the caller passes in
"now" and each answer, and `BinanceSource` performs the HTTP requests it is told to.

`/api/v3/trades` gives the latest trades; when its oldest id is past the last one published,
`/api/v3/historicalTrades?fromId=` fills the hole first, so every id goes out exactly once and in
order. Symbols advance together in event time: of the symbols due, the least complete is fetched
first, and trades more than `lead_ms` ahead of the least published symbol wait in memory, so a
catch-up never makes another symbol's trades late for the streaming job. 429 pauses every symbol
for Retry-After, 418 (IP ban) stops all polling for the ban period; 5xx, timeouts, dropped
connections and bad bodies back off with jitter and are counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from app.common.schema import RecordError, Trade
from app.producer.trades import classify_poll, release_horizon_ms, take_releasable, trades_from_body
from app.producer.weight_budget import (
    WeightBudget,
    backoff_s,
    paced_poll_interval_s,
    parse_retry_after,
    parse_used_weight,
)

log = logging.getLogger(__name__)

TRADES_PATH = "/api/v3/trades"
HISTORICAL_TRADES_PATH = "/api/v3/historicalTrades"
# Request weight of both endpoints with limit=1000 (Binance spot REST API, 2024 onwards).
REQUEST_WEIGHT = 25
PAGE_SIZE = 1000
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
# Binance's shortest IP ban is 2 minutes; used only if a 418 comes without Retry-After.
DEFAULT_BAN_S = 120.0
# Used only if a 429 comes without Retry-After: the rest of a weight minute at most.
DEFAULT_RETRY_AFTER_S = 60.0
# A symbol failing this many times in a row stops holding the others back in event time (a delisted
# symbol must not stall the rest); its later trades may then arrive late for the streaming job.
STALLED_AFTER_FAILURES = 5


@dataclass(frozen=True, slots=True)
class Now:
    """The two clocks the schedule reads: Binance counts weight per wall-clock minute, while due
    times use a clock that never jumps."""

    wall_ms: int
    mono_s: float


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP GET to send now; its weight is already spent."""

    symbol: str
    path: str
    params: Mapping[str, str]
    asked_ms: int  # wall clock when it was decided


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing may be sent for this long."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer as it came."""

    status: int
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Failure:
    """No usable answer: kind is one of "timeout", "connection", "malformed" (a cut-off body)."""

    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one answer changed: the trades released now and what to count."""

    released: list[Trade]
    used_weight_1m: int | None = None  # the budget's count once the server has answered
    http_error: str | None = None
    rate_limited_429: bool = False
    banned_418: bool = False
    gap_backfilled: bool = False
    unrecoverable_gap: bool = False


@dataclass
class _SymbolState:
    last_id: int | None = None
    backfill_to: int | None = None  # set while ids up to this one are being back-filled
    failures: int = 0
    due: float = 0.0  # Now.mono_s of the next request
    complete_to_ms: int | None = None  # every trade up to this trade time has been fetched
    pending: list[Trade] = field(default_factory=list)  # fetched, held back by the event-time horizon

    def published_to_ms(self) -> int | None:
        """Trade time up to which this symbol's trades have all gone out (or are known not to exist)."""
        if self.pending:
            return self.pending[0].trade_time - 1
        return self.complete_to_ms


@dataclass(frozen=True, slots=True)
class Screened:
    """An answer judged on everything but what its trades mean to the caller."""

    trades: list[Trade] | None  # None: nothing usable, the same ids are asked for again
    outcome: Outcome  # what to count (nothing released yet)
    failure: tuple[str, str] | None = None  # (kind, detail): the symbol backs off


def screen_answer(
    budget: WeightBudget, request: Request, response: Answer | Failure, now_ms: int
) -> Screened:
    """The rules every answer to a trade request obeys, whoever asked: the server's weight count,
    429 pauses every request for Retry-After, 418 (IP ban) for the ban, any other error or an
    unreadable body is a failure of this request only."""
    if isinstance(response, Failure):
        return Screened(None, Outcome([], http_error=response.kind), (response.kind, response.detail))
    used = parse_used_weight(response.headers.get(USED_WEIGHT_HEADER))
    if used is not None:
        budget.observe_used(used, now_ms)
    used_now = budget.used(now_ms)
    status = response.status
    if status == 429:
        # The limit is per IP: every symbol waits, not just this one.
        wait_s = parse_retry_after(response.headers.get("Retry-After"), DEFAULT_RETRY_AFTER_S)
        budget.block_until(now_ms + int(wait_s * 1000))
        log.warning("event=rate_limited status=429 retry_after_s=%s path=%s", wait_s, request.path)
        return Screened(None, Outcome([], used_now, rate_limited_429=True))
    if status == 418:
        wait_s = parse_retry_after(response.headers.get("Retry-After"), DEFAULT_BAN_S)
        budget.block_until(now_ms + int(wait_s * 1000))
        log.error("event=ip_banned status=418 ban_s=%s path=%s", wait_s, request.path)
        return Screened(None, Outcome([], used_now, banned_418=True))
    if status != 200:
        kind = "5xx" if status >= 500 else "4xx"
        text = response.body[:200].decode(errors="replace")
        return Screened(None, Outcome([], used_now, http_error=kind), (kind, f"HTTP {status}: {text!r}"))
    try:
        trades = trades_from_body(response.body, request.symbol, now_ms)
    except RecordError as exc:
        return Screened(None, Outcome([], used_now, http_error="malformed"), ("malformed", str(exc)))
    return Screened(trades, Outcome([], used_now))


def latest_request(symbol: str, asked_ms: int) -> Request:
    """A page of the symbol's latest trades."""
    return Request(symbol, TRADES_PATH, {"symbol": symbol, "limit": str(PAGE_SIZE)}, asked_ms)


def history_request(symbol: str, last_id: int, asked_ms: int) -> Request:
    """A page of the symbol's trades from the id after `last_id` on (a back-fill)."""
    params = {"symbol": symbol, "limit": str(PAGE_SIZE), "fromId": str(last_id + 1)}
    return Request(symbol, HISTORICAL_TRADES_PATH, params, asked_ms)


def retry_delay_s(failures: int, jitter: float, kind: str, detail: str, path: str) -> float:
    """How long a symbol waits after its `failures`-th failed request in a row (logged)."""
    delay = backoff_s(failures, base_s=BACKOFF_BASE_S, cap_s=BACKOFF_CAP_S, jitter=jitter)
    log.warning(
        "event=http_error kind=%s path=%s failures=%d retry_in_s=%.2f detail=%r",
        kind,
        path,
        failures,
        delay,
        detail,
    )
    return delay


class Retrying(Protocol):
    """A symbol's back-off: its failed requests in a row, and when (`Now.mono_s`) it may ask again."""

    failures: int
    due: float


def take_answer(
    budget: WeightBudget,
    state: Retrying,
    request: Request,
    response: Answer | Failure,
    now: Now,
    jitter: Callable[[], float],
) -> Screened:
    """`screen_answer`, then the symbol's back-off: each failure in a row puts its next request off
    for longer (logged), and usable trades end the row."""
    screened = screen_answer(budget, request, response, now.wall_ms)
    if screened.failure is not None:
        state.failures += 1
        state.due = now.mono_s + retry_delay_s(state.failures, jitter(), *screened.failure, request.path)
    if screened.trades is not None:
        state.failures = 0
    return screened


class Schedule:
    """Per-symbol polling within one shared weight budget; see the module docstring.

    `lead_ms` is how far in event time a symbol may run ahead of the least published one; `jitter`
    draws uniformly from [0, 1) for the back-off, so that symbols failing together spread out.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        poll_interval_s: float,
        budget_per_minute: int,
        lead_ms: int,
        jitter: Callable[[], float],
    ) -> None:
        self.poll_interval_s = paced_poll_interval_s(
            poll_interval_s, len(symbols), REQUEST_WEIGHT, budget_per_minute
        )
        if self.poll_interval_s > poll_interval_s:
            log.warning(
                "event=poll_interval_stretched requested_s=%s effective_s=%.2f reason=weight_budget",
                poll_interval_s,
                self.poll_interval_s,
            )
        self._budget = WeightBudget(budget_per_minute)
        self._lead_ms = lead_ms
        self._jitter = jitter
        self._states = {symbol: _SymbolState() for symbol in symbols}
        self._announced_block = 0

    def resume(self, last: Mapping[str, Trade]) -> None:
        """Continue after these trades per symbol; a symbol absent starts from its latest page."""
        for symbol, state in self._states.items():
            state.last_id = last[symbol].trade_id if symbol in last else None
            state.complete_to_ms = last[symbol].trade_time if symbol in last else None
            state.pending = []
            state.backfill_to = None
            state.failures = 0
            state.due = 0.0
            log.info("event=resume source=binance symbol=%s last_id=%s", symbol, state.last_id)

    def next_step(self, now: Now) -> list[Trade] | Wait | Request:
        """Trades to publish if any may go out; else the request to send, or how long to wait."""
        released = self.release()
        if released:
            return released
        symbol, state = self._choose(now.mono_s)
        if state.due > now.mono_s:
            return Wait(state.due - now.mono_s)
        delay_ms = self._budget.delay_ms(REQUEST_WEIGHT, now.wall_ms)
        if delay_ms > 0:
            self._announce_block(now.wall_ms, delay_ms)
            return Wait(delay_ms / 1000)
        self._budget.spend(REQUEST_WEIGHT, now.wall_ms)
        if state.backfill_to is not None and state.last_id is not None:
            return history_request(symbol, state.last_id, now.wall_ms)
        return latest_request(symbol, now.wall_ms)

    def on_answer(self, request: Request, response: Answer | Failure, now: Now) -> Outcome:
        """Take in what came back for `request` (sent after `next_step` returned it)."""
        state = self._states[request.symbol]
        screened = take_answer(self._budget, state, request, response, now, self._jitter)
        if screened.trades is None:
            return replace(screened.outcome, released=self.release())
        trades = screened.trades
        used_now = screened.outcome.used_weight_1m
        if request.path == HISTORICAL_TRADES_PATH:
            filled, unrecoverable = self._on_history(request.symbol, state, trades)
            return Outcome(self.release(), used_now, gap_backfilled=filled, unrecoverable_gap=unrecoverable)
        self._on_latest(request.symbol, state, trades, request.asked_ms, now)
        return Outcome(self.release(), used_now)

    def release(self) -> list[Trade]:
        """The fetched trades of one symbol that the event-time horizon lets out now."""
        horizon = release_horizon_ms(
            (s.published_to_ms() for s in self._states.values() if s.failures < STALLED_AFTER_FAILURES),
            self._lead_ms,
        )
        return take_releasable((state.pending for state in self._states.values()), horizon)

    def _choose(self, now_s: float) -> tuple[str, _SymbolState]:
        """Of the symbols due now, the least complete (it holds the others back; one never fetched
        goes first); when none is due, the one due soonest."""
        due = [item for item in self._states.items() if item[1].due <= now_s]
        if due:
            return min(due, key=lambda item: item[1].complete_to_ms or -1)
        return min(self._states.items(), key=lambda item: item[1].due)

    def _announce_block(self, now_ms: int, delay_ms: int) -> None:
        blocked_until = self._budget.blocked_until()
        if blocked_until > now_ms and blocked_until != self._announced_block:
            self._announced_block = blocked_until
            log.warning("event=paused reason=server_limit resume_in_s=%.1f", delay_ms / 1000)

    def _on_latest(
        self, symbol: str, state: _SymbolState, trades: list[Trade], asked_ms: int, now: Now
    ) -> None:
        outcome = classify_poll(state.last_id, trades)
        if outcome.missing_from is not None:
            state.backfill_to = outcome.missing_to
            state.due = 0.0
            log.info(
                "event=gap symbol=%s missing_from=%s missing_to=%s",
                symbol,
                outcome.missing_from,
                outcome.missing_to,
            )
            return
        if outcome.new:
            state.last_id = outcome.new[-1].trade_id
        # No gap: every trade made before the request is in this answer or was fetched before.
        state.complete_to_ms = max(asked_ms, state.complete_to_ms or 0)
        # A full page of new trades means more may be waiting: ask again at once.
        full_page = len(outcome.new) >= PAGE_SIZE and len(trades) >= PAGE_SIZE
        state.due = 0.0 if full_page else now.mono_s + self.poll_interval_s
        state.pending.extend(outcome.new)

    def _on_history(self, symbol: str, state: _SymbolState, trades: list[Trade]) -> tuple[bool, bool]:
        """Take in a back-fill page; (gap filled, ids found missing for good)."""
        if state.last_id is None or state.backfill_to is None:
            return False, False
        expected = state.last_id + 1
        unrecoverable = bool(trades) and trades[0].trade_id > expected
        if unrecoverable:
            # Binance no longer has these ids: say so loudly rather than stall forever.
            log.error(
                "event=unrecoverable_gap symbol=%s missing_from=%d missing_to=%d",
                symbol,
                expected,
                trades[0].trade_id - 1,
            )
        new = [t for t in trades if t.trade_id >= expected]
        if new:
            state.last_id = new[-1].trade_id
            state.complete_to_ms = max(new[-1].trade_time, state.complete_to_ms or 0)
        state.pending.extend(new)
        filled = state.last_id >= state.backfill_to or len(trades) < PAGE_SIZE
        if filled:
            log.info("event=gap_filled symbol=%s up_to=%d", symbol, state.last_id)
            state.backfill_to = None
        state.due = 0.0
        return filled, unrecoverable
