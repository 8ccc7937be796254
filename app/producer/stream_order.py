"""The WebSocket source's decision procedure: which stream trades may go out, and which ids must
be back-filled over REST first.

A pure state machine like `Schedule`: the caller passes in each frame, "now" and each REST answer,
and `WebSocketSource` does the I/O it is told to. Per symbol, trades go out in strictly ascending
id with no id skipped and none twice:
- A stream trade is held until every id before it has gone out. A hole below it (a skipped id, or
  the time the connection was down) is filled from `/api/v3/historicalTrades?fromId=` first.
- After every (re)connect nothing is known about what was missed while down, even if the next
  frame continues where the last one stopped: until a frame is held, `/api/v3/trades` (with a
  back-fill if it shows a hole) confirms that nothing before the stream is missing.
- A frame that is not a trade, for a symbol not subscribed, or whose id is not above the previous
  frame's is dropped and counted; one whose id was already back-filled over REST is the expected
  overlap and dropped silently.
- A symbol still back-filling holds the others back in event time by the same `lead_ms` as the
  REST source, so the streaming job's shared watermark does not make its older trades late.
REST answers obey the REST source's rules (`take_answer`: weight budget, 429, 418, back-off).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from app.common.schema import RecordError, Trade
from app.producer.schedule import (
    HISTORICAL_TRADES_PATH,
    PAGE_SIZE,
    REQUEST_WEIGHT,
    STALLED_AFTER_FAILURES,
    Answer,
    Failure,
    Now,
    Outcome,
    Request,
    Wait,
    history_request,
    latest_request,
    take_answer,
)
from app.producer.trades import classify_poll, release_horizon_ms, take_releasable, trade_from_stream
from app.producer.weight_budget import WeightBudget

log = logging.getLogger(__name__)

# How long the caller may block on the stream when nothing else is to be done.
IDLE_S = 1.0


class Dropped(Enum):
    """Why a frame was not used (the counters' names)."""

    MALFORMED = "stream_malformed_frames"
    UNKNOWN_SYMBOL = "stream_unknown_symbol_frames"
    NOT_INCREASING = "stream_out_of_order_frames"


@dataclass
class _SymbolState:
    last_id: int | None = None  # the last id released (or the raw topic's tail)
    last_time: int | None = None  # its trade time
    frame_id: int | None = None  # the last id seen on this connection
    held: list[Trade] = field(default_factory=list)  # stream trades after last_id, ascending
    ready: list[Trade] = field(default_factory=list)  # contiguous after the published ones
    confirmed: bool = True  # False from a (re)connect until REST or the stream joins up
    hole_to: int | None = None  # a /trades answer showed ids up to this one missing
    failures: int = 0
    due: float = 0.0  # Now.mono_s of the next REST request

    def take(self, trades: Sequence[Trade]) -> None:
        """Append trades after last_id (ascending) to what goes out."""
        new = [t for t in trades if self.last_id is None or t.trade_id > self.last_id]
        if new:
            self.ready.extend(new)
            self.last_id, self.last_time = new[-1].trade_id, new[-1].trade_time

    def join(self) -> None:
        """Move held stream trades that continue the released ids to `ready`."""
        if self.last_id is None:
            if not self.held:
                return
            self.last_id = self.held[0].trade_id - 1  # a fresh start begins at the first frame
        last_id = self.last_id
        self.held = [t for t in self.held if t.trade_id > last_id]
        count = 0
        while count < len(self.held) and self.held[count].trade_id == last_id + count + 1:
            count += 1
        if count:
            self.take(self.held[:count])
            self.held = self.held[count:]
            self.confirmed = True
        if self.hole_to is not None and self.last_id is not None and self.last_id >= self.hole_to:
            self.hole_to = None

    def needs_rest(self) -> bool:
        if self.last_id is None:
            return False
        return bool(self.held) or self.hole_to is not None or not self.confirmed


class StreamOrder:
    """Per-symbol sequencing of one combined trade stream; see the module docstring."""

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        budget_per_minute: int,
        lead_ms: int,
        jitter: Callable[[], float],
    ) -> None:
        self._budget = WeightBudget(budget_per_minute)
        self._lead_ms = lead_ms
        self._jitter = jitter
        self._states = {symbol: _SymbolState() for symbol in symbols}

    def resume(self, last: Mapping[str, Trade]) -> None:
        """Continue after these trades per symbol; a symbol absent starts at its first frame."""
        for symbol in self._states:
            tail = last.get(symbol)
            self._states[symbol] = _SymbolState(
                last_id=tail.trade_id if tail else None, last_time=tail.trade_time if tail else None
            )
            log.info("event=resume source=binance_ws symbol=%s last_id=%s", symbol, tail and tail.trade_id)
        self.connected()

    def connected(self) -> None:
        """A new connection: what was sent while none was open must be confirmed over REST."""
        for state in self._states.values():
            state.frame_id = None
            state.confirmed = state.last_id is None
            state.due = 0.0

    def on_frame(self, frame: str | bytes, received_ms: int) -> Dropped | None:
        """Take in one stream message; why it was dropped, or None if it was used."""
        try:
            trade = trade_from_stream(frame, received_ms)
        except RecordError as exc:
            log.warning("event=stream_frame_dropped reason=malformed detail=%r", str(exc)[:200])
            return Dropped.MALFORMED
        state = self._states.get(trade.symbol)
        if state is None:
            log.warning("event=stream_frame_dropped reason=unknown_symbol symbol=%r", trade.symbol)
            return Dropped.UNKNOWN_SYMBOL
        if state.frame_id is not None and trade.trade_id <= state.frame_id:
            log.warning(
                "event=stream_frame_dropped reason=not_increasing symbol=%s id=%d after=%d",
                trade.symbol,
                trade.trade_id,
                state.frame_id,
            )
            return Dropped.NOT_INCREASING
        if state.frame_id is not None and trade.trade_id > state.frame_id + 1:
            log.info(
                "event=gap source=binance_ws symbol=%s missing_from=%d missing_to=%d",
                trade.symbol,
                state.frame_id + 1,
                trade.trade_id - 1,
            )
        state.frame_id = trade.trade_id
        state.held.append(trade)
        state.join()
        return None

    def next_step(self, now: Now) -> list[Trade] | Wait | Request:
        """Trades to publish if any may go out; else the REST request to send, or how long to wait."""
        released = self.release()
        if released:
            return released
        behind = [item for item in self._states.items() if item[1].needs_rest()]
        if not behind:
            return Wait(IDLE_S)
        due = [item for item in behind if item[1].due <= now.mono_s]
        if not due:
            return Wait(min(IDLE_S, min(s.due for _, s in behind) - now.mono_s))
        symbol, state = min(due, key=lambda item: item[1].last_time or -1)
        delay_ms = self._budget.delay_ms(REQUEST_WEIGHT, now.wall_ms)
        if delay_ms > 0:
            return Wait(min(IDLE_S, delay_ms / 1000))
        self._budget.spend(REQUEST_WEIGHT, now.wall_ms)
        assert state.last_id is not None
        if state.held or state.hole_to is not None:
            return history_request(symbol, state.last_id, now.wall_ms)
        return latest_request(symbol, now.wall_ms)

    def on_answer(self, request: Request, response: Answer | Failure, now: Now) -> Outcome:
        """Take in what came back for `request` (sent after `next_step` returned it)."""
        state = self._states[request.symbol]
        screened = take_answer(self._budget, state, request, response, now, self._jitter)
        if screened.trades is None:
            return replace(screened.outcome, released=self.release())
        if request.path == HISTORICAL_TRADES_PATH:
            filled, unrecoverable = self._on_history(request.symbol, state, screened.trades)
            return replace(
                screened.outcome,
                released=self.release(),
                gap_backfilled=filled,
                unrecoverable_gap=unrecoverable,
            )
        poll = classify_poll(state.last_id, screened.trades)
        if poll.missing_to is not None:
            state.hole_to = poll.missing_to
            log.info(
                "event=gap source=binance_ws symbol=%s missing_from=%s missing_to=%s",
                request.symbol,
                poll.missing_from,
                poll.missing_to,
            )
        else:
            # Everything up to the request is out or in this answer; the stream has the rest.
            state.take(poll.new)
            state.confirmed = True
            state.join()
        return replace(screened.outcome, released=self.release())

    def release(self) -> list[Trade]:
        """The ready trades of one symbol that the event-time horizon lets out now."""
        horizon = release_horizon_ms(
            (
                s.last_time
                for s in self._states.values()
                if s.needs_rest() and s.failures < STALLED_AFTER_FAILURES
            ),
            self._lead_ms,
        )
        return take_releasable((state.ready for state in self._states.values()), horizon)

    def _on_history(self, symbol: str, state: _SymbolState, trades: list[Trade]) -> tuple[bool, bool]:
        """Take in a back-fill page; (hole filled, ids found missing for good)."""
        assert state.last_id is not None
        expected = state.last_id + 1
        target = state.held[0].trade_id - 1 if state.held else state.hole_to
        first = trades[0].trade_id if trades else None
        # Binance no longer has these ids (or never had): say so loudly rather than stall forever.
        gone_to = None
        if first is not None and first > expected:
            gone_to = first - 1
        elif len(trades) < PAGE_SIZE and target is not None and (not trades or trades[-1].trade_id < target):
            gone_to = target
        state.take(trades)
        if gone_to is not None:
            log.error(
                "event=unrecoverable_gap symbol=%s missing_from=%d missing_to=%d", symbol, expected, gone_to
            )
            if state.last_id is None or state.last_id < gone_to:
                state.last_id = gone_to
        state.join()
        filled = state.hole_to is None and not state.held
        if filled:
            log.info("event=gap_filled source=binance_ws symbol=%s up_to=%d", symbol, state.last_id)
        state.due = 0.0
        return filled, gone_to is not None
