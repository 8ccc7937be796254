"""Replay source: trades from a Binance public-data trades CSV, looped for an endless demo.

Each pass over the file shifts ids by the file's id span and times by its time span, so the
stream stays continuous and increasing however long it runs. At `replay_speed` > 0 trade times
are rebased so the first trade sent is "now" and later ones follow at the file's pace (divided
by the speed); at 0 they keep the file's own times and go out as fast as Kafka takes them.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import itertools
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from app.common.schema import RecordError, Trade, now_ms
from app.common.settings import Settings
from app.producer.trades import trade_from_csv

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
MAX_BLOCK_S = 0.5


class ReplayFileError(ValueError):
    """The replay file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class ReplayPlan:
    """The endless virtual stream defined by one file: pure arithmetic, no clock."""

    trades: tuple[Trade, ...]
    id_span: int
    time_span: int

    @classmethod
    def from_trades(cls, trades: list[Trade]) -> ReplayPlan:
        if not trades:
            raise ReplayFileError("the replay file holds no trades")
        for before, after in itertools.pairwise(trades):
            if after.trade_id <= before.trade_id or after.trade_time < before.trade_time:
                raise ReplayFileError(
                    f"trades out of id or time order: id {before.trade_id} then {after.trade_id}"
                )
        first, last = trades[0], trades[-1]
        elapsed = last.trade_time - first.trade_time
        # One mean inter-trade gap between the end of a pass and the start of the next.
        gap = max(1, elapsed // max(1, len(trades) - 1))
        return cls(tuple(trades), last.trade_id - first.trade_id + 1, elapsed + gap)

    def at(self, index: int) -> Trade:
        """The index-th trade of the endless stream (0 = the file's first row)."""
        loop, row = divmod(index, len(self.trades))
        trade = self.trades[row]
        return dataclasses.replace(
            trade,
            trade_id=trade.trade_id + loop * self.id_span,
            trade_time=trade.trade_time + loop * self.time_span,
        )

    def index_after(self, trade_id: int) -> int:
        """Index of the first trade of the stream whose id is greater than `trade_id`."""
        first_id = self.trades[0].trade_id
        if trade_id < first_id:
            return 0
        loop = (trade_id - first_id) // self.id_span
        local_id = trade_id - loop * self.id_span
        ids = [t.trade_id for t in self.trades]
        return loop * len(self.trades) + bisect.bisect_right(ids, local_id)


def load_plan(path: Path, symbol: str) -> ReplayPlan:
    trades: list[Trade] = []
    try:
        with path.open(newline="") as handle:
            for line_number, row in enumerate(csv.reader(handle), start=1):
                if not row:
                    continue
                try:
                    trades.append(trade_from_csv(row, symbol))
                except RecordError as exc:
                    raise ReplayFileError(f"{path}:{line_number}: {exc}") from None
    except OSError as exc:
        raise ReplayFileError(f"cannot read replay file {path}: {exc}") from None
    try:
        return ReplayPlan.from_trades(trades)
    except ReplayFileError as exc:
        raise ReplayFileError(f"{path}: {exc}") from None


class ReplaySource:
    """`TradeSource` over a recorded file, for the demo and for load tests."""

    def __init__(self, settings: Settings, stop: threading.Event, plan: ReplayPlan | None = None) -> None:
        self._symbol = settings.symbols[0]
        if len(settings.symbols) > 1:
            log.warning("event=replay_one_symbol symbol=%s ignored=%s", self._symbol, settings.symbols[1:])
        self._plan = plan or load_plan(settings.replay_file, self._symbol)
        self._speed = settings.replay_speed
        if self._speed < 0:
            raise ReplayFileError(f"replay speed must be >= 0, got {self._speed}")
        self._stop = stop
        self._next = 0
        self._anchor_virtual = 0
        self._anchor_wall = 0
        self.resume({})

    def resume(self, last: Mapping[str, Trade]) -> None:
        previous = last.get(self._symbol)
        self._next = 0 if previous is None else self._plan.index_after(previous.trade_id)
        self._anchor_virtual = self._plan.at(self._next).trade_time
        # Never go back in time behind what the topic already holds.
        self._anchor_wall = max(now_ms(), previous.trade_time if previous else 0)
        log.info(
            "event=resume source=replay symbol=%s last_id=%s next_id=%d",
            self._symbol,
            previous.trade_id if previous else None,
            self._plan.at(self._next).trade_id,
        )

    def _out_time(self, virtual_time: int) -> int:
        if self._speed == 0:
            return virtual_time
        return self._anchor_wall + int((virtual_time - self._anchor_virtual) / self._speed)

    def next_batch(self) -> list[Trade]:
        if self._stop.is_set():
            return []
        now = now_ms()
        batch: list[Trade] = []
        while len(batch) < BATCH_SIZE:
            trade = self._plan.at(self._next)
            out_time = self._out_time(trade.trade_time)
            if self._speed > 0 and out_time > now:
                if not batch:
                    self._stop.wait(min((out_time - now) / 1000, MAX_BLOCK_S))
                break
            batch.append(dataclasses.replace(trade, trade_time=out_time, ingest_time=now))
            self._next += 1
        return batch
