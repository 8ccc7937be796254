"""Where each raw record goes: the pure core of the streaming job's one stateful step.

Every record the job reads ends up in exactly one place (the conservation rule):
  a window        a valid trade, first delivery of its (symbol, trade_id), window still open
  late            a valid trade whose window the watermark has already closed
  a dead letter   a record that breaks a `TRADE_RULES` row, or a second delivery of a trade id with
                  other content (a conflict: the exchange never sends one)
  duplicates      a second delivery of a trade id with the same content (counted, then dropped)

`SymbolLedger` holds one symbol's open windows (exact integer-unit aggregates plus the trade ids
seen in each, so duplicates are found while the window is open) and its cumulative `Counts`.
No Spark here: app/processing/processor.py moves this state in and out of Spark's state store.
Amounts are integers of 10^-8 (prices, quantities, VWAP) and 10^-16 (price x quantity).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from decimal import Decimal

from app.common.schema import MAX_DECIMAL_PLACES, LateTrade, WindowStats
from app.core.windows import WINDOW_MS, window_start

UNIT_PLACES = MAX_DECIMAL_PLACES
NOTIONAL_PLACES = 2 * MAX_DECIMAL_PLACES


def units_decimal(units: int, places: int) -> Decimal:
    """An integer count of 10^-places as a Decimal that keeps all its places (65000.10000000)."""
    return Decimal(units).scaleb(-places)


def quotient_half_even(numerator: int, denominator: int) -> int:
    """round_half_even(numerator / denominator) for positive integers, exactly."""
    quotient, rest = divmod(numerator, denominator)
    twice = 2 * rest
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


@dataclass(frozen=True, slots=True)
class Record:
    """One raw-topic record as the job's parsing step hands it over (reason None = a valid trade)."""

    partition: int
    offset: int
    key: bytes | None
    value: str  # the original bytes as UTF-8, invalid sequences replaced
    reason: str | None = None
    trade_id: int = 0
    trade_time: int = 0
    price_units: int = 0
    qty_units: int = 0
    fingerprint: int = 0  # a hash of the trade's content: equal for a true duplicate


@dataclass(slots=True)
class OpenWindow:
    """One symbol's window while the watermark has not passed its end."""

    window_start: int
    open_at: tuple[int, int]  # (trade_time, trade_id) of the trade that sets the open
    open_units: int
    close_at: tuple[int, int]
    close_units: int
    high_units: int
    low_units: int
    base_units: int
    notional_units: int
    trade_count: int
    first_trade_id: int
    last_trade_id: int
    last_trade_time: int
    fingerprints: dict[int, int] = field(default_factory=dict)  # trade_id -> content hash

    @classmethod
    def first(cls, record: Record) -> OpenWindow:
        at = (record.trade_time, record.trade_id)
        price = record.price_units
        return cls(
            window_start=window_start(record.trade_time),
            open_at=at,
            open_units=price,
            close_at=at,
            close_units=price,
            high_units=price,
            low_units=price,
            base_units=record.qty_units,
            notional_units=price * record.qty_units,
            trade_count=1,
            first_trade_id=record.trade_id,
            last_trade_id=record.trade_id,
            last_trade_time=record.trade_time,
            fingerprints={record.trade_id: record.fingerprint},
        )

    @classmethod
    def of_trades(
        cls,
        start: int,
        trade_ids: list[int],
        trade_times: list[int],
        prices: list[int],
        qtys: list[int],
        fingerprints: list[int],
    ) -> OpenWindow:
        """The window of distinct trades (no id twice) given as columns: what `first` and then `add`
        of each one make, in one pass per column."""
        at = list(zip(trade_times, trade_ids, strict=True))
        opening = min(range(len(at)), key=at.__getitem__)
        closing = max(range(len(at)), key=at.__getitem__)
        return cls(
            window_start=start,
            open_at=at[opening],
            open_units=prices[opening],
            close_at=at[closing],
            close_units=prices[closing],
            high_units=max(prices),
            low_units=min(prices),
            base_units=sum(qtys),
            notional_units=sum(map(operator.mul, prices, qtys)),
            trade_count=len(at),
            first_trade_id=min(trade_ids),
            last_trade_id=max(trade_ids),
            last_trade_time=max(trade_times),
            fingerprints=dict(zip(trade_ids, fingerprints, strict=True)),
        )

    def add(self, record: Record) -> None:
        at = (record.trade_time, record.trade_id)
        price = record.price_units
        if at < self.open_at:
            self.open_at, self.open_units = at, price
        if at > self.close_at:
            self.close_at, self.close_units = at, price
        self.high_units = max(self.high_units, price)
        self.low_units = min(self.low_units, price)
        self.base_units += record.qty_units
        self.notional_units += price * record.qty_units
        self.trade_count += 1
        self.first_trade_id = min(self.first_trade_id, record.trade_id)
        self.last_trade_id = max(self.last_trade_id, record.trade_id)
        self.last_trade_time = max(self.last_trade_time, record.trade_time)
        self.fingerprints[record.trade_id] = record.fingerprint

    def merge(self, other: OpenWindow) -> None:
        """Add `other`'s trades, none of whose ids this window holds (as `add` one by one would)."""
        if other.open_at < self.open_at:
            self.open_at, self.open_units = other.open_at, other.open_units
        if other.close_at > self.close_at:
            self.close_at, self.close_units = other.close_at, other.close_units
        self.high_units = max(self.high_units, other.high_units)
        self.low_units = min(self.low_units, other.low_units)
        self.base_units += other.base_units
        self.notional_units += other.notional_units
        self.trade_count += other.trade_count
        self.first_trade_id = min(self.first_trade_id, other.first_trade_id)
        self.last_trade_id = max(self.last_trade_id, other.last_trade_id)
        self.last_trade_time = max(self.last_trade_time, other.last_trade_time)
        self.fingerprints.update(other.fingerprints)

    @property
    def window_end(self) -> int:
        return self.window_start + WINDOW_MS

    def stats(self, symbol: str, *, is_final: bool) -> WindowStats:
        def price(units: int) -> Decimal:
            return units_decimal(units, UNIT_PLACES)

        return WindowStats(
            symbol=symbol,
            window_start=self.window_start,
            window_end=self.window_end,
            open=price(self.open_units),
            high=price(self.high_units),
            low=price(self.low_units),
            close=price(self.close_units),
            vwap=price(quotient_half_even(self.notional_units, self.base_units)),
            base_volume=price(self.base_units),
            quote_volume=units_decimal(self.notional_units, NOTIONAL_PLACES),
            trade_count=self.trade_count,
            first_trade_id=self.first_trade_id,
            last_trade_id=self.last_trade_id,
            last_trade_time=self.last_trade_time,
            is_final=is_final,
        )


@dataclass(slots=True)
class Counts:
    """One symbol's cumulative accounting since the job's checkpoint began. `records` equals the sum
    of the four destinations plus `open_trades` (trades in windows not final yet)."""

    records: int = 0
    final_trades: int = 0
    final_windows: int = 0
    open_trades: int = 0
    late: int = 0
    late_base_units: int = 0
    late_notional_units: int = 0  # 10^-16
    dead_letters: int = 0
    conflicts: int = 0  # the dead letters that are conflicting deliveries of a trade id
    duplicates: int = 0

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, item.name) for item in fields(self))

    @classmethod
    def of_tuple(cls, values: Iterable[int]) -> Counts:
        return cls(*values)


@dataclass(frozen=True, slots=True)
class DeadRecord:
    record: Record
    reason: str


@dataclass(slots=True)
class BatchOutcome:
    """What one micro-batch of one symbol's records produced (before encoding for Kafka)."""

    touched: list[OpenWindow] = field(default_factory=list)  # opened or grown: live rows
    opened: list[OpenWindow] = field(default_factory=list)  # new: each needs a timer at its end
    late: list[LateTrade] = field(default_factory=list)
    dead: list[DeadRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Slice:
    """Some of one symbol's records of a batch, in raw-topic order.

    When all of them are valid trades of one window, `summary` is that window as routing them alone
    would build it (first deliveries only) and `duplicates` counts their repeated deliveries, so
    the ledger can add them without touching each record (`records` loads them when it must)."""

    records: Callable[[], Iterable[Record]]
    summary: OpenWindow | None = None
    duplicates: int = 0


# Below every window's end: a summary never finds a trade late.
_NO_WATERMARK = -(2**63)


def summarize(symbol: str, records: list[Record]) -> tuple[OpenWindow | None, int]:
    """A `Slice`'s summary and duplicate count: the window that `records` alone make, when they are
    all valid trades of one window with no conflicting delivery; else (None, 0)."""
    ledger = SymbolLedger(symbol)
    outcome = ledger.ingest(records, _NO_WATERMARK, "")
    if outcome.dead or len(ledger.windows) != 1:
        return None, 0
    (window,) = ledger.windows.values()
    return window, ledger.counts.duplicates


def conflict_reason(record: Record) -> str:
    return f"trade_id {record.trade_id} delivered again with different content (the first delivery was kept)"


@dataclass(slots=True)
class SymbolLedger:
    """One symbol's open windows and counts; `ingest` and `finalize` are the only ways to change them."""

    symbol: str
    windows: dict[int, OpenWindow] = field(default_factory=dict)  # by window_start
    counts: Counts = field(default_factory=Counts)

    def ingest(self, records: Iterable[Record], watermark: int, source_topic: str) -> BatchOutcome:
        """Route each record, in the order given (the raw topic's), to exactly one destination.

        A trade is late when its window ends at or before `watermark`: that window was finalized
        (or never opened and never will be). Late wins over duplicate: the id set of a closed window
        is gone, so a late second delivery is reported as late, with the window it missed.
        """
        return self.ingest_slices([Slice(lambda: records)], watermark, source_topic)

    def ingest_slices(self, slices: Iterable[Slice], watermark: int, source_topic: str) -> BatchOutcome:
        """`ingest` of the slices' records, the slices taken in raw-topic order. A slice whose summary
        holds none of its window's trade ids is added whole; the others are routed record by record,
        so both ways give what routing every record would."""
        outcome = BatchOutcome()
        touched: dict[int, OpenWindow] = {}
        for part in slices:
            if part.summary is None or not self._absorb(
                part.summary, part.duplicates, watermark, outcome, touched
            ):
                for record in part.records():
                    self._route(record, watermark, source_topic, outcome, touched)
        outcome.touched = sorted(touched.values(), key=lambda w: w.window_start)
        return outcome

    def _absorb(
        self,
        summary: OpenWindow,
        duplicates: int,
        watermark: int,
        outcome: BatchOutcome,
        touched: dict[int, OpenWindow],
    ) -> bool:
        """Add a slice's summary to its open window; False (and no change) when its trades are late
        or an id of it is already in the window."""
        start = summary.window_start
        if summary.window_end <= watermark:
            return False
        window = self.windows.get(start)
        if window is None:
            window = self.windows[start] = summary
            outcome.opened.append(window)
        elif window.fingerprints.keys().isdisjoint(summary.fingerprints):
            window.merge(summary)
        else:
            return False
        counts = self.counts
        counts.records += summary.trade_count + duplicates
        counts.duplicates += duplicates
        counts.open_trades += summary.trade_count
        touched[start] = window
        return True

    def _route(
        self,
        record: Record,
        watermark: int,
        source_topic: str,
        outcome: BatchOutcome,
        touched: dict[int, OpenWindow],
    ) -> None:
        counts = self.counts
        counts.records += 1
        if record.reason is not None:
            counts.dead_letters += 1
            outcome.dead.append(DeadRecord(record, record.reason))
            return
        start = window_start(record.trade_time)
        if start + WINDOW_MS <= watermark:
            counts.late += 1
            counts.late_base_units += record.qty_units
            counts.late_notional_units += record.price_units * record.qty_units
            outcome.late.append(self._late(record, start, watermark, source_topic))
            return
        window = self.windows.get(start)
        if window is None:
            window = self.windows[start] = OpenWindow.first(record)
            outcome.opened.append(window)
        else:
            seen = window.fingerprints.get(record.trade_id)
            if seen == record.fingerprint:
                counts.duplicates += 1
                return
            if seen is not None:
                counts.dead_letters += 1
                counts.conflicts += 1
                outcome.dead.append(DeadRecord(record, conflict_reason(record)))
                return
            window.add(record)
        counts.open_trades += 1
        touched[start] = window

    def _late(self, record: Record, start: int, watermark: int, source_topic: str) -> LateTrade:
        return LateTrade(
            symbol=self.symbol,
            trade_id=record.trade_id,
            window_start=start,
            window_end=start + WINDOW_MS,
            watermark=watermark,
            topic=source_topic,
            partition=record.partition,
            offset=record.offset,
            value=record.value,
        )

    def finalize(self, window_start_ms: int) -> WindowStats | None:
        """Close the window that starts at `window_start_ms` (its end has passed the watermark)."""
        window = self.windows.pop(window_start_ms, None)
        if window is None:
            return None
        self.counts.open_trades -= window.trade_count
        self.counts.final_trades += window.trade_count
        self.counts.final_windows += 1
        return window.stats(self.symbol, is_final=True)
