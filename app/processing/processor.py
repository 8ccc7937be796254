"""The job's one stateful step: a Spark stateful processor (transformWithStateInPandas) per symbol.

Each micro-batch hands it one symbol's records (all of them: valid, invalid, duplicate, late), in
Arrow batches. It loads that symbol's `SymbolLedger` from the state store, routes every record
(app/processing/ledger.py; a window's records at once when no trade id repeats among them), and
yields Kafka rows (topic, key, value) for every destination: live window rows, final window rows
when a window's event-time timer fires, late trades, dead letters and the symbol's cumulative
`SparkLedger`. State is checkpointed with the query, so a restart resumes with the same open
windows, trade ids and counts.

State layout, per symbol: a map window_start -> the window's aggregates and its trade ids with
their content hashes (numpy arrays as bytes), and one value with the counts. The state store is
reached over a socket, so every call is made once per window, never once per trade.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle
from pyspark.sql.types import BinaryType, LongType, StringType, StructField, StructType

from app.common.schema import DeadLetter, SparkLedger, now_ms
from app.core.windows import WINDOW_MS, window_start
from app.processing.ledger import (
    NOTIONAL_PLACES,
    UNIT_PLACES,
    BatchOutcome,
    Counts,
    OpenWindow,
    Record,
    Slice,
    SymbolLedger,
    summarize,
    units_decimal,
)

OUTPUT_SCHEMA = StructType(
    [
        StructField("topic", StringType(), False),
        StructField("key", BinaryType(), True),
        StructField("value", StringType(), False),
    ]
)

# Big integers (sums of 10^-16 units exceed 64 bits) are kept as decimal text.
_WINDOW_KEY = StructType([StructField("window_start", LongType(), False)])
_WINDOW_FIELDS = [f.name for f in fields(OpenWindow) if f.name not in ("window_start", "fingerprints")]
_WINDOW_VALUE = StructType(
    [StructField(name, StringType(), False) for name in _WINDOW_FIELDS]
    + [StructField("trade_ids", BinaryType(), False), StructField("fingerprints", BinaryType(), False)]
)
_COUNTS_VALUE = StructType([StructField(f.name, StringType(), False) for f in fields(Counts)])


def _encode_window(window: OpenWindow) -> tuple[Any, ...]:
    def text(value: Any) -> str:
        return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)

    ids = np.fromiter(window.fingerprints.keys(), dtype=np.int64, count=len(window.fingerprints))
    hashes = np.fromiter(window.fingerprints.values(), dtype=np.int64, count=len(window.fingerprints))
    return (*(text(getattr(window, name)) for name in _WINDOW_FIELDS), ids.tobytes(), hashes.tobytes())


def _decode_window(start: int, row: tuple[Any, ...]) -> OpenWindow:
    values: dict[str, Any] = {}
    for name, text in zip(_WINDOW_FIELDS, row, strict=False):
        values[name] = tuple(int(x) for x in text.split(",")) if name.endswith("_at") else int(text)
    ids = np.frombuffer(row[-2], dtype=np.int64).tolist()
    hashes = np.frombuffer(row[-1], dtype=np.int64).tolist()
    return OpenWindow(window_start=start, fingerprints=dict(zip(ids, hashes, strict=True)), **values)


_RECORD_COLUMNS = (
    "partition",
    "offset",
    "key",
    "value",
    "reason",
    "trade_id",
    "trade_time",
    "price_units",
    "qty_units",
    "fingerprint",
)


def slices_of(symbol: str, batches: Iterator[pd.DataFrame]) -> tuple[list[Slice], set[int]]:
    """The batch's records of `symbol` as slices in raw-topic order (the shuffle does not keep it):
    one per window, summarized at once from the columns when no trade id repeats in it, and one of
    the records that break a rule. `Record`s are built only for the slices routed one by one.
    Also the windows the slices touch."""
    frame = pd.concat(list(batches), ignore_index=True)
    frame = frame.sort_values(["partition", "offset"], kind="stable")
    columns = {name: frame[name].tolist() for name in _RECORD_COLUMNS}
    groups: dict[int | None, list[int]] = {}
    for index, (reason, time) in enumerate(zip(columns["reason"], columns["trade_time"], strict=True)):
        groups.setdefault(None if isinstance(reason, str) else window_start(int(time)), []).append(index)

    def records(rows: list[int]) -> list[Record]:
        return [_record(*(columns[name][i] for name in _RECORD_COLUMNS)) for i in rows]

    def take(name: str, rows: list[int]) -> list[int]:
        return [int(columns[name][i]) for i in rows]

    def slice_of(start: int | None, rows: list[int]) -> Slice:
        load = functools.partial(records, rows)
        if start is None:
            return Slice(load)
        ids = take("trade_id", rows)
        if len(set(ids)) < len(ids):
            summary, duplicates = summarize(symbol, load())
            return Slice(load, summary, duplicates)
        trades = (take(name, rows) for name in ("trade_time", "price_units", "qty_units", "fingerprint"))
        return Slice(load, OpenWindow.of_trades(start, ids, *trades))

    ordered = sorted(groups.items(), key=lambda item: item[1][0])
    return [slice_of(start, rows) for start, rows in ordered], {
        start for start in groups if start is not None
    }


def _record(part: int, offset: int, key: bytes | None, value: str, reason: Any, *trade: Any) -> Record:
    if isinstance(reason, str):
        return Record(part, offset, key, value, reason)
    trade_id, time, price, qty, fingerprint = trade
    return Record(
        part, offset, key, value, None, int(trade_id), int(time), int(price), int(qty), int(fingerprint)
    )


def dead_letter(source_topic: str, record: Record, reason: str) -> DeadLetter:
    return DeadLetter(reason, source_topic, record.partition, record.offset, record.value)


class LedgerProcessor(StatefulProcessor):
    """Routes one symbol's records; see the module docstring."""

    def __init__(
        self,
        source_topic: str,
        aggregates_topic: str,
        late_topic: str,
        dead_letter_topic: str,
        metrics_topic: str,
    ) -> None:
        self.source_topic = source_topic
        self.aggregates_topic = aggregates_topic
        self.late_topic = late_topic
        self.dead_letter_topic = dead_letter_topic
        self.metrics_topic = metrics_topic

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.handle = handle
        self.windows = handle.getMapState("windows", _WINDOW_KEY, _WINDOW_VALUE)
        self.counts = handle.getValueState("counts", _COUNTS_VALUE)

    def _load(self, symbol: str, starts: set[int]) -> SymbolLedger:
        """The symbol's counts, and those of its open windows that start at `starts`."""
        ledger = SymbolLedger(symbol)
        stored = self.counts.get()
        if stored is not None:
            ledger.counts = Counts.of_tuple(int(v) for v in stored)
        for start in starts:
            row = self.windows.getValue((start,))
            if row is not None:
                ledger.windows[start] = _decode_window(start, row)
        return ledger

    def handleInputRows(
        self, key: Any, rows: Iterator[pd.DataFrame], timerValues: Any
    ) -> Iterator[pd.DataFrame]:
        symbol = key[0]
        slices, starts = slices_of(symbol, rows)
        ledger = self._load(symbol, starts)
        outcome = ledger.ingest_slices(slices, timerValues.getCurrentWatermarkInMs(), self.source_topic)
        for window in outcome.opened:
            self.handle.registerTimer(window.window_end)
        for window in outcome.touched:
            self.windows.updateValue((window.window_start,), _encode_window(window))
        self.counts.update(tuple(str(v) for v in ledger.counts.as_tuple()))
        yield self._frame(self._rows(symbol, ledger, outcome))

    def handleExpiredTimer(self, key: Any, timerValues: Any, expiredTimerInfo: Any) -> Iterator[pd.DataFrame]:
        symbol = key[0]
        start = expiredTimerInfo.getExpiryTimeInMs() - WINDOW_MS
        ledger = self._load(symbol, {start})
        stats = ledger.finalize(start)
        rows: list[tuple[str, bytes | None, str]] = []
        if stats is not None:
            self.windows.removeKey((start,))
            self.counts.update(tuple(str(v) for v in ledger.counts.as_tuple()))
            rows.append((self.aggregates_topic, stats.key.encode(), stats.to_json().decode()))
            rows.append(self._ledger_row(symbol, ledger.counts))
        yield self._frame(rows)

    def _rows(
        self, symbol: str, ledger: SymbolLedger, outcome: BatchOutcome
    ) -> list[tuple[str, bytes | None, str]]:
        rows: list[tuple[str, bytes | None, str]] = []
        for window in outcome.touched:
            stats = window.stats(symbol, is_final=False)
            rows.append((self.aggregates_topic, stats.key.encode(), stats.to_json().decode()))
        for late in outcome.late:
            rows.append((self.late_topic, late.key.encode(), late.to_json().decode()))
        for dead in outcome.dead:
            letter = dead_letter(self.source_topic, dead.record, dead.reason)
            rows.append((self.dead_letter_topic, dead.record.key, letter.to_json().decode()))
        rows.append(self._ledger_row(symbol, ledger.counts))
        return rows

    def _ledger_row(self, symbol: str, counts: Counts) -> tuple[str, bytes | None, str]:
        metric = SparkLedger(
            symbol=symbol,
            time=now_ms(),
            records=counts.records,
            final_trades=counts.final_trades,
            final_windows=counts.final_windows,
            open_trades=counts.open_trades,
            late=counts.late,
            late_base_volume=format(units_decimal(counts.late_base_units, UNIT_PLACES), "f"),
            late_quote_volume=format(units_decimal(counts.late_notional_units, NOTIONAL_PLACES), "f"),
            dead_letters=counts.dead_letters,
            conflicts=counts.conflicts,
            duplicates=counts.duplicates,
        )
        return (self.metrics_topic, metric.key, metric.to_json().decode())

    @staticmethod
    def _frame(rows: list[tuple[str, bytes | None, str]]) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=["topic", "key", "value"])

    def close(self) -> None:
        pass
