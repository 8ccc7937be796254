"""Pure computations of the benchmark: percentiles, trade -> aggregate-row matching, id continuity,
exact window comparison, conservation of records. No I/O, so tests/bench/test_stats.py checks them
directly."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from app.common.schema import SparkLedger, WindowStats
from tests.support.exact import half_even_8


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; the smallest value that at least q%
    of the values do not exceed."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p95, p99, max and mean (ms), or only count 0 when there is nothing."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": round(sum(values) / len(values), 1),
    }


def keeping_up(batch_ms: Sequence[int], trigger_ms: int) -> dict[str, Any]:
    """Whether the job's micro-batches fit in its trigger interval: a longer one is a batch Spark
    logs as "falling behind", and the next one starts late."""
    return {
        "trigger_ms": trigger_ms,
        "batches": len(batch_ms),
        "over_trigger": sum(1 for ms in batch_ms if ms > trigger_ms),
        "duration_ms": summarize(batch_ms),
    }


@dataclass(frozen=True, slots=True)
class RowSeen:
    """One aggregates record: its window, the highest trade id it includes, when Kafka got it."""

    symbol: str
    window_start: int
    last_trade_id: int
    timestamp_ms: int


def first_row_times(rows: Iterable[RowSeen], trades: Iterable[tuple[str, int, int]]) -> dict[int, int]:
    """For each trade (symbol, trade_id, window_start), the timestamp of the first record of its
    (symbol, window) whose last_trade_id >= trade_id, in topic order. Trades without one are absent.

    Records of one key share a partition, so `rows` in (partition, offset) order is each key's order.
    """
    running: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
    for row in rows:
        ids, times = running.setdefault((row.symbol, row.window_start), ([], []))
        if not ids or row.last_trade_id > ids[-1]:
            ids.append(row.last_trade_id)
            times.append(row.timestamp_ms)
    found: dict[int, int] = {}
    for symbol, trade_id, start in trades:
        entry = running.get((symbol, start))
        if entry is None:
            continue
        ids, times = entry
        index = bisect.bisect_left(ids, trade_id)
        if index < len(ids):
            found[trade_id] = times[index]
    return found


def id_continuity(published: Iterable[int], served: Sequence[int]) -> dict[str, Any]:
    """Lost and duplicated ids of the raw topic against what the exchange served (a few of each)."""
    counts = Counter(published)
    duplicated = sorted(i for i, n in counts.items() if n > 1)
    lost = sorted(set(served) - counts.keys())
    extra = sorted(counts.keys() - set(served))
    return {
        "served": len(served),
        "published": sum(counts.values()),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "unexpected": len(extra),
        "examples": {"lost": lost[:5], "duplicated": duplicated[:5], "unexpected": extra[:5]},
    }


def continuity_ok(report: Mapping[str, Any]) -> bool:
    return bool(report["lost"] == 0 and report["duplicated"] == 0 and report["unexpected"] == 0)


def compare_windows(
    expected: Mapping[str, Mapping[str, Any]], finals: Mapping[str, WindowStats]
) -> dict[str, Any]:
    """Closed windows against the exact reference: every field equal, VWAP with 8 places."""
    exact, mismatches = 0, []
    for key, want in expected.items():
        got = finals.get(key)
        if got is None:
            mismatches.append(f"{key}: no final row")
            continue
        wrong = [
            f"{name} {getattr(got, name)} != {value}"
            for name, value in want.items()
            if getattr(got, name) != value
        ]
        if got.vwap.as_tuple().exponent != -8:
            wrong.append(f"vwap {got.vwap} not to 8 places")
        if wrong:
            mismatches.append(f"{key}: " + "; ".join(wrong))
        else:
            exact += 1
    return {
        "windows": len(expected),
        "exact": exact,
        "share_exact": exact / len(expected) if expected else None,
        "mismatches": mismatches[:10],
    }


def inexact_vwaps(expected: Mapping[str, Mapping[str, Any]], vwaps: Mapping[str, float]) -> dict[str, Any]:
    """A floating-point job's VWAP per window against the exact one: a window is inexact when its
    double, rounded half-even to 8 places as the exact VWAP is, differs from it."""
    inexact = [
        f"{key}: {vwaps[key]!r} != {want['vwap']}"
        for key, want in expected.items()
        if key in vwaps and half_even_8(Fraction(vwaps[key])) != want["vwap"]
    ]
    return {
        "windows": len(expected),
        "inexact": len(inexact),
        "missing": sum(1 for key in expected if key not in vwaps),
        "examples": inexact[:5],
    }


def conservation(
    raw_records: int, finals: Mapping[str, WindowStats], ledgers: Iterable[SparkLedger], open_records: int
) -> dict[str, Any]:
    """Where every raw record went: raw = sum of trade_count over the distinct final windows + late +
    dead letters + duplicates (the last ledger of each symbol) + the trades of the windows no
    watermark can close yet, which must be exactly the `open_records` the input left open."""
    ledger = list(ledgers)
    figures = {
        "raw_records": raw_records,
        "final_trades": sum(row.trade_count for row in finals.values()),
        "late": sum(m.late for m in ledger),
        "dead_letters": sum(m.dead_letters for m in ledger),
        "duplicates": sum(m.duplicates for m in ledger),
        "open_trades": sum(m.open_trades for m in ledger),
        "open_expected": open_records,
    }
    accounted = sum(figures[k] for k in ("final_trades", "late", "dead_letters", "duplicates", "open_trades"))
    figures["holds"] = accounted == raw_records and figures["open_trades"] == open_records
    return figures


def cdf_points(values: Sequence[float], points: int = 200) -> list[tuple[float, float]]:
    """(value, share of values <= it) at `points` evenly spaced ranks: a compact CDF for a chart."""
    ordered = sorted(values)
    if not ordered:
        return []
    n = len(ordered)
    ranks = sorted({min(n, max(1, round(i * n / points))) for i in range(1, points + 1)})
    return [(ordered[r - 1], r / n) for r in ranks]


def budget_bound_s(requests: int, per_minute: int, first_request_s: float) -> float:
    """The least time `requests` can take when at most `per_minute` fit in each fixed wall-clock
    minute and the first goes out `first_request_s` seconds into its minute (HTTP time ignored)."""
    extra_minutes = -(-requests // per_minute) - 1
    if extra_minutes <= 0:
        return 0.0
    return (60 - first_request_s) + 60 * (extra_minutes - 1)


# A replay run's trades/s over its batches after the first (tests/bench/replay.py timing()): shown beside
# the target's figure, which counts the whole replay, warm-up included.
AFTER_FIRST_BATCH = "trades_per_s_after_first_batch"


def fastest(
    runs: Iterable[Mapping[str, Any]], key: str, name: str, figure: str = "trades_per_s"
) -> int | None:
    """The highest `figure` (trades/s) among the runs whose `key` is `name` (its rounds); None if none
    finished."""
    return max(filter(None, (run.get(figure) for run in runs if run.get(key) == name)), default=None)


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 3)
