"""The processor's hand-off without Spark: the rows Spark gives it, cut into slices per window."""

from __future__ import annotations

import random

import pandas as pd

from app.core.windows import WINDOW_MS
from app.processing.ledger import SymbolLedger
from app.processing.processor import slices_of

T0 = 1_767_225_600_000


def frame_rows(rng: random.Random) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for offset in range(600):
        if offset % 50 == 7:
            rows.append(
                {"partition": offset % 2, "offset": offset, "key": None, "value": "x", "reason": "not JSON"}
            )
            continue
        # The first three windows: ids repeat (duplicates, and conflicts where the price differs).
        # The fourth: ids all distinct. The fifth: ids repeat with the same content only. The last
        # two are summarized at once.
        trade_id, minute = rng.randrange(300), None
        if offset >= 400:
            trade_id, minute = (1000 + offset, 3) if offset < 500 else (2000 + offset % 40, 4)
        minute = trade_id % 3 if minute is None else minute
        price = 10**20 + (rng.randrange(3) if offset < 400 else trade_id)  # beyond 64 bits
        rows.append(
            {
                "partition": offset % 2,
                "offset": offset,
                "key": b"BTCUSDT",
                "value": f"v{offset}",
                "reason": None,
                "trade_id": trade_id,
                "trade_time": T0 + minute * WINDOW_MS + trade_id,
                "price_units": str(price),
                "qty_units": "3",
                "fingerprint": price,
            }
        )
    return rows


def test_slices_route_the_batch_as_its_records_in_topic_order_would() -> None:
    rng = random.Random(2)
    rows = frame_rows(rng)
    shuffled = rows[:]
    rng.shuffle(shuffled)  # the shuffle does not keep the raw topic's order
    columns = [
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
    ]
    frames = [pd.DataFrame(shuffled[:250], columns=columns), pd.DataFrame(shuffled[250:], columns=columns)]
    slices, starts = slices_of("BTCUSDT", iter(frames))
    assert starts == {T0 + minute * WINDOW_MS for minute in range(5)}
    assert sum(part.summary is not None for part in slices) == 2
    ordered = sorted(rows, key=lambda row: (row["partition"], row["offset"]))
    records = [r for part in slices for r in part.records()]
    assert sorted((r.partition, r.offset) for r in records) == [
        (r["partition"], r["offset"]) for r in ordered
    ]

    by_slice, by_record = SymbolLedger("BTCUSDT"), SymbolLedger("BTCUSDT")
    got = by_slice.ingest_slices(slices, T0 + WINDOW_MS, "raw")
    in_order = sorted(records, key=lambda r: (r.partition, r.offset))
    want = by_record.ingest(in_order, T0 + WINDOW_MS, "raw")
    assert by_slice.counts == by_record.counts and by_slice.windows == by_record.windows
    assert sorted(d.record.offset for d in got.dead) == sorted(d.record.offset for d in want.dead)
    assert sorted(t.offset for t in got.late) == sorted(t.offset for t in want.late)
    assert by_record.counts.duplicates and by_record.counts.conflicts and by_record.counts.late
