"""The job's routing core without Spark: duplicates, conflicts, late trades, counts and exact windows."""

from __future__ import annotations

import dataclasses
import random
from decimal import Decimal
from fractions import Fraction

from app.common.schema import Trade
from app.core.windows import WINDOW_MS, aggregate_window
from app.processing.ledger import (
    Counts,
    OpenWindow,
    Record,
    Slice,
    SymbolLedger,
    quotient_half_even,
    summarize,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a window start


def record(offset: int, trade_id: int, at: int, price: str, qty: str, *, variant: int = 0) -> Record:
    return Record(
        partition=0,
        offset=offset,
        key=b"BTCUSDT",
        value=f'{{"trade_id":{trade_id}}}',
        trade_id=trade_id,
        trade_time=at,
        price_units=int(Decimal(price).scaleb(8)),
        qty_units=int(Decimal(qty).scaleb(8)),
        fingerprint=hash((at, price, qty, variant)),
    )


def trade_of(r: Record) -> Trade:
    price, qty = Decimal(r.price_units).scaleb(-8), Decimal(r.qty_units).scaleb(-8)
    return Trade(r.trade_id, "BTCUSDT", price, qty, price * qty, r.trade_time, False)


def conserved(counts: Counts) -> bool:
    destinations = counts.final_trades + counts.open_trades + counts.late + counts.dead_letters
    return counts.records == destinations + counts.duplicates


def test_quotient_half_even_matches_fraction() -> None:
    rng = random.Random(7)
    cases = [(rng.randrange(1, 10**32), rng.randrange(1, 10**20)) for _ in range(2000)]
    cases += [(5, 2), (7, 2), (10**30 + 1, 2), (3 * 10**9 + 5 * 10**8, 10**9)]  # exact ties
    for n, d in cases:
        exact = Fraction(n, d)
        floor = exact.numerator // exact.denominator
        rest = exact - floor
        want = floor + (1 if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2) else 0)
        assert quotient_half_even(n, d) == want, (n, d)


def test_a_window_equals_the_reference_aggregate_whatever_the_order() -> None:
    rng = random.Random(3)

    def price() -> str:
        return f"{rng.randrange(1, 10**7)}.{rng.randrange(10**8):08d}"

    records = [
        record(i, 100 + i, T0 + rng.randrange(WINDOW_MS), price(), f"0.{rng.randrange(1, 10**8):08d}")
        for i in range(300)
    ]
    ledger = SymbolLedger("BTCUSDT")
    rng.shuffle(records)
    ledger.ingest(records[:150], watermark=0, source_topic="raw")
    ledger.ingest(records[150:], watermark=0, source_topic="raw")
    final = ledger.finalize(T0)
    assert final == aggregate_window([trade_of(r) for r in records], is_final=True)
    assert (
        final is not None
        and final.to_json() == aggregate_window(map(trade_of, records), is_final=True).to_json()
    )
    assert ledger.counts.final_trades == 300 and ledger.counts.final_windows == 1
    assert conserved(ledger.counts)


def test_a_repeated_delivery_counts_once_within_and_across_batches() -> None:
    first = [record(i, 10 + i, T0 + i * 1000, "100.5", "1") for i in range(5)]
    ledger = SymbolLedger("BTCUSDT")
    outcome = ledger.ingest([*first, first[2], first[2]], watermark=0, source_topic="raw")
    assert [w.trade_count for w in outcome.touched] == [5]
    ledger.ingest([first[0], first[4]], watermark=0, source_topic="raw")
    final = ledger.finalize(T0)
    assert final is not None and final.trade_count == 5 and final.base_volume == Decimal(5)
    assert ledger.counts.duplicates == 4
    assert conserved(ledger.counts)


def test_a_conflicting_delivery_is_a_dead_letter_naming_the_trade_and_the_first_is_kept() -> None:
    kept = record(0, 42, T0 + 1000, "100", "1")
    other = record(1, 42, T0 + 1000, "101", "1", variant=1)
    ledger = SymbolLedger("BTCUSDT")
    outcome = ledger.ingest([kept, other], watermark=0, source_topic="raw")
    assert [d.record.offset for d in outcome.dead] == [1]
    assert "trade_id 42" in outcome.dead[0].reason
    final = ledger.finalize(T0)
    assert final is not None and final.close == Decimal(100) and final.trade_count == 1
    assert (ledger.counts.conflicts, ledger.counts.dead_letters, ledger.counts.duplicates) == (1, 1, 0)
    assert conserved(ledger.counts)


def test_a_trade_whose_window_the_watermark_closed_is_late_with_the_window_it_missed() -> None:
    ledger = SymbolLedger("BTCUSDT")
    ledger.ingest([record(0, 1, T0 + 5_000, "100", "2")], watermark=0, source_topic="raw")
    ledger.finalize(T0)
    late = record(1, 2, T0 + 59_999, "100.5", "0.5")
    on_time = record(2, 3, T0 + WINDOW_MS, "100", "1")  # the next window is still open
    outcome = ledger.ingest([late, on_time], watermark=T0 + WINDOW_MS, source_topic="raw")
    assert [(t.trade_id, t.window_start, t.window_end, t.offset) for t in outcome.late] == [
        (2, T0, T0 + WINDOW_MS, 1)
    ]
    assert outcome.late[0].value == late.value
    assert [w.window_start for w in outcome.touched] == [T0 + WINDOW_MS]
    counts = ledger.counts
    assert (counts.late, counts.late_base_units, counts.late_notional_units) == (
        1,
        50_000_000,
        50_25 * 10**14,
    )
    assert conserved(counts)


def test_an_invalid_record_is_a_dead_letter_with_its_reason() -> None:
    bad = Record(partition=0, offset=7, key=None, value="nope", reason="not JSON")
    ledger = SymbolLedger("")
    outcome = ledger.ingest([bad], watermark=0, source_topic="raw")
    assert [(d.record.offset, d.reason) for d in outcome.dead] == [(7, "not JSON")]
    assert (ledger.counts.records, ledger.counts.dead_letters) == (1, 1)


def test_slices_route_their_records_as_routing_each_record_would() -> None:
    """Summarized slices (valid trades of one window) are added whole unless late or sharing a trade
    id with the open window; both ways must give the same windows, counts, late and dead records."""
    rng = random.Random(11)
    stream: list[Record] = []
    for offset in range(3000):
        roll = rng.random()
        if roll < 0.1 and stream:  # a repeated delivery of an earlier trade, same content
            stream.append(dataclasses.replace(rng.choice(stream), offset=offset))
        elif roll < 0.12 and stream:  # a conflicting one
            earlier = rng.choice(stream)
            stream.append(dataclasses.replace(earlier, offset=offset, fingerprint=earlier.fingerprint + 1))
        elif roll < 0.14:
            stream.append(Record(partition=0, offset=offset, key=None, value="x", reason="not JSON"))
        else:
            at = T0 + rng.randrange(6 * WINDOW_MS)
            stream.append(record(offset, offset, at, f"{rng.randrange(1, 10**5)}.5", "0.25"))
    by_record, by_slice = SymbolLedger("BTCUSDT"), SymbolLedger("BTCUSDT")
    outcomes: list[list[object]] = [[], []]
    for batch, watermark in (
        (stream[:1000], 0),
        (stream[1000:2000], T0 + 2 * WINDOW_MS),
        (stream[2000:], T0 + 3 * WINDOW_MS),
    ):
        slices = []
        for chunk_at in range(0, len(batch), 97):  # runs as the parsing tasks' Arrow batches cut them
            groups: dict[int | None, list[Record]] = {}
            for r in batch[chunk_at : chunk_at + 97]:
                groups.setdefault(None if r.reason else r.trade_time // WINDOW_MS, []).append(r)
            for members in groups.values():
                summary, duplicates = summarize("BTCUSDT", members)
                slices.append(Slice(lambda members=members: members, summary, duplicates))
        slices.sort(key=lambda part: next(iter(part.records())).offset)
        for ledger, outcome, got in (
            (by_record, by_record.ingest(batch, watermark, "raw"), outcomes[0]),
            (by_slice, by_slice.ingest_slices(slices, watermark, "raw"), outcomes[1]),
        ):
            got.append([w.stats("BTCUSDT", is_final=False) for w in outcome.touched])
            got.append(sorted((t.offset, t.to_json()) for t in outcome.late))
            got.append(sorted((d.record.offset, d.reason) for d in outcome.dead))
            got.append(
                [ledger.finalize(start) for start in sorted(ledger.windows) if start + WINDOW_MS <= watermark]
            )
            got.append(ledger.counts.as_tuple())
    assert outcomes[0] == outcomes[1]
    assert by_record.counts.duplicates > 0 and by_record.counts.conflicts > 0 and by_record.counts.late > 0
    assert conserved(by_slice.counts)


def test_a_window_made_at_once_from_columns_equals_one_made_trade_by_trade() -> None:
    rng = random.Random(5)
    for size in (1, 2, 7, 400):
        times = [T0 + rng.randrange(5) for _ in range(size)]  # equal times: the trade id decides
        trades = [
            record(i, 1000 + rng.randrange(10**6) * 10 + i % 10, t, f"{rng.randrange(1, 99)}.5", "0.3")
            for i, t in enumerate(times)
        ]
        trades = list({r.trade_id: r for r in trades}.values())
        one_by_one = OpenWindow.first(trades[0])
        for r in trades[1:]:
            one_by_one.add(r)
        at_once = OpenWindow.of_trades(
            T0,
            *(
                [getattr(r, name) for r in trades]
                for name in ("trade_id", "trade_time", "price_units", "qty_units", "fingerprint")
            ),
        )
        assert at_once == one_by_one
