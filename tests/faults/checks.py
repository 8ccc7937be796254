"""Verdicts over plain data: ids served vs ids in the raw topic, closed windows vs the baseline run
and the exact reference, dead letters, and whether each fault was counted where it shows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.common.schema import DeadLetter, ProducerMetric, WindowStats
from app.processing.job import QUERY_NAME
from tests.support.conservation import Conservation

# The fields the exact reference (tests.support.pipeline.expected_windows) computes.
WINDOW_FIELDS = (
    "open", "close", "high", "low", "vwap", "quote_volume", "base_volume", "trade_count",
    "first_trade_id", "last_trade_id",
)  # fmt: skip


@dataclass(frozen=True)
class IdReport:
    served: int
    in_raw: int
    lost: int  # served, never in the raw topic
    duplicated: int  # extra copies in the raw topic
    unexpected: int  # in the raw topic, never served
    examples: tuple[str, ...] = ()


def id_continuity(served: Mapping[str, Sequence[int]], raw: Iterable[tuple[str, int]]) -> IdReport:
    """Compare, per symbol, the ids the exchange served with the ids the raw topic holds."""
    counts = Counter(raw)
    served_sets = {symbol: set(ids) for symbol, ids in served.items()}
    lost = duplicated = unexpected = 0
    examples: list[str] = []
    for symbol, wanted in served_sets.items():
        missing = sorted(i for i in wanted if counts[(symbol, i)] == 0)
        lost += len(missing)
        if missing:
            examples.append(f"{symbol} lost {missing[:5]}{'...' if len(missing) > 5 else ''}")
    for (symbol, trade_id), n in counts.items():
        if n > 1:
            duplicated += n - 1
            if len(examples) < 10:
                examples.append(f"{symbol} id {trade_id} x{n}")
        if trade_id not in served_sets.get(symbol, set()):
            unexpected += n
    return IdReport(
        served=sum(len(ids) for ids in served.values()),
        in_raw=sum(counts.values()),
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
        examples=tuple(examples),
    )


def window_values(row: WindowStats) -> dict[str, Any]:
    return {name: getattr(row, name) for name in WINDOW_FIELDS}


@dataclass(frozen=True)
class FinalWindows:
    """Closed windows by key; `conflicts` are keys emitted final twice with different values
    (never acceptable), `repeats` identical re-emissions (the Kafka sink is at-least-once)."""

    windows: dict[str, dict[str, Any]]
    conflicts: tuple[str, ...]
    repeats: int
    bad_scale: tuple[str, ...]  # VWAP not given with exactly 8 decimal places


def final_windows(rows: Iterable[WindowStats]) -> FinalWindows:
    windows: dict[str, dict[str, Any]] = {}
    conflicts: list[str] = []
    repeats = 0
    bad_scale: list[str] = []
    for row in rows:
        if not row.is_final:
            continue
        values = window_values(row)
        if row.vwap.as_tuple().exponent != -8:
            bad_scale.append(row.key)
        if row.key in windows:
            if windows[row.key] == values:
                repeats += 1
            else:
                conflicts.append(row.key)
            continue
        windows[row.key] = values
    return FinalWindows(windows, tuple(conflicts), repeats, tuple(bad_scale))


def window_differences(
    got: Mapping[str, Mapping[str, Any]], want: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Every difference between two sets of closed windows, as readable lines (empty: equal).
    Only the keys of `want` are compared for presence; extra keys in `got` are differences too."""
    lines: list[str] = []
    for key in sorted(want.keys() - got.keys()):
        lines.append(f"{key}: missing")
    for key in sorted(got.keys() - want.keys()):
        lines.append(f"{key}: not expected")
    for key in sorted(want.keys() & got.keys()):
        for name, value in want[key].items():
            mine = got[key].get(name)
            if mine != value:
                lines.append(f"{key} {name}: {mine} != {value}")
    return lines


def late_risk(
    trades: Iterable[tuple[int, int]],
    watermark_ms: int = 10_000,
    margin_ms: int = 1_000,
    window_ms: int = 60_000,
) -> int:
    """Trades at risk of being dropped as late: (trade_time, ingest_time) pairs whose window had
    already ended `watermark_ms` before the newest event time ingested at least `margin_ms`
    earlier (about one trigger, so a micro-batch may have moved the watermark past them).
    Spark's watermark is one for all symbols: a symbol published behind another loses trades."""
    ordered = sorted(trades, key=lambda t: t[1])
    at_risk, newest, seen = 0, None, 0
    for trade_time, ingest_time in ordered:
        while seen < len(ordered) and ordered[seen][1] <= ingest_time - margin_ms:
            newest = max(newest or 0, ordered[seen][0])
            seen += 1
        window_end = trade_time - trade_time % window_ms + window_ms
        if newest is not None and window_end <= newest - watermark_ms:
            at_risk += 1
    return at_risk


@dataclass(frozen=True)
class DeadLetterReport:
    count: int  # records on the dead-letter topic
    distinct: int  # distinct (partition, offset) of the bad records they name
    reasons: dict[str, int]
    missing: int  # bad records written that have no dead letter
    unexpected: int  # dead letters for records that were not written as bad


def dead_letters(letters: Sequence[DeadLetter], written: Sequence[bytes | None]) -> DeadLetterReport:
    """Dead letters against the bad values written (None = an empty value), by value, each once."""
    by_offset: dict[tuple[int, int], DeadLetter] = {}
    for letter in letters:
        by_offset.setdefault((letter.partition, letter.offset), letter)
    wanted = Counter(_as_text(value) for value in written)
    got = Counter(letter.value for letter in by_offset.values())
    reasons = Counter(_reason_head(letter.reason) for letter in by_offset.values())
    return DeadLetterReport(
        count=len(letters),
        distinct=len(by_offset),
        reasons=dict(sorted(reasons.items())),
        missing=sum((wanted - got).values()),
        unexpected=sum((got - wanted).values()),
    )


def _as_text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", errors="replace")


def _reason_head(reason: str) -> str:
    """The reason without the offending value, so equal reasons group together."""
    return reason.split(":")[0].split(", got")[0].strip()


@dataclass
class Evidence:
    """What the pipeline itself showed about the fault (metrics topic, logs, exchange log)."""

    producer: ProducerMetric = field(default_factory=ProducerMetric)  # highest value of each counter
    producer_snapshots: int = 0
    spark_snapshots: int = 0
    spark_batches_before: dict[str, int] = field(default_factory=dict)  # last batch id before the fault
    spark_batches_after: dict[str, int] = field(default_factory=dict)  # first batch id after it
    late_trades: int = 0  # distinct records on the late-trades topic
    duplicates: int = 0  # the job's count of repeated deliveries dropped (SparkLedger)
    injected_copies: int = 0  # raw records the case wrote again as they were (duplicates case)
    injected_late: int = 0  # trades the case wrote behind the watermark (late_burst case)
    late_risk: int = 0  # trades published behind the watermark another symbol had moved (late_risk)
    restarts: dict[str, int] = field(default_factory=dict)
    log_events: dict[str, int] = field(default_factory=dict)  # producer log `event=` counts
    historical_requests: int = 0
    faults_served: int = 0
    faults_pending: int = 0
    violations: int = 0
    max_weight_per_minute: int = 0
    weight_budget: int = 0
    dead_letters: int = 0


def max_counters(snapshots: Iterable[ProducerMetric]) -> ProducerMetric:
    """The highest value each producer counter reached (a restarted producer counts from 0)."""
    best: dict[str, Any] = {}  # counter name -> highest value
    errors: dict[str, int] = {}
    for snap in snapshots:
        for name, value in snap.counters():
            best[name] = max(best.get(name, 0), value)
        for kind, n in snap.http_errors.items():
            errors[kind] = max(errors.get(kind, 0), n)
    return ProducerMetric(http_errors=errors, **best)


def _figures(**values: object) -> str:
    return " ".join(f"{name}={value}" for name, value in values.items())


def _batches_continue(e: Evidence) -> bool:
    query = QUERY_NAME
    return query in e.spark_batches_after and e.spark_batches_after[query] > e.spark_batches_before.get(
        query, -1
    )


def event_counted(case: str, e: Evidence) -> tuple[bool, str]:
    """Whether the fault of `case` was counted and is visible, with the figures that show it."""
    counters = e.producer
    if case == "baseline":
        return True, "-"
    if case == "producer_sigkill":
        # Two starts resume each of the two symbols; the trades missed while down are back-filled.
        restarts, resumes = e.restarts.get("producer", 0), e.log_events.get("resume", 0)
        ok = restarts >= 1 and resumes >= 2 * 2 and counters.gaps_backfilled >= 1
        return ok, _figures(restarts=restarts, resume_lines=resumes, gaps_backfilled=counters.gaps_backfilled)
    if case == "spark_sigkill":
        ok = e.restarts.get("spark", 0) >= 1 and _batches_continue(e)
        return ok, (
            f"restarts={e.restarts.get('spark', 0)} before={e.spark_batches_before} "
            f"after={e.spark_batches_after}"
        )
    if case == "broker_stop":
        unreachable = e.log_events.get("kafka_unreachable", 0)
        ok = unreachable + counters.producer_rebuilds >= 1 and bool(e.spark_batches_after)
        return ok, _figures(
            kafka_unreachable=unreachable,
            rebuilds=counters.producer_rebuilds,
            spark_after=bool(e.spark_batches_after),
        )
    if case == "http_429":
        ok = counters.rate_limited_429 >= 1 and e.violations == 0
        return ok, _figures(rate_limited_429=counters.rate_limited_429, violations=e.violations)
    if case == "http_418":
        ok = counters.banned_418 >= 1 and e.violations == 0
        return ok, _figures(banned_418=counters.banned_418, violations=e.violations)
    single = {"http_500": "5xx", "http_timeout": "timeout", "http_malformed": "malformed",
              "http_truncated": "malformed"}  # fmt: skip
    if case in single:
        kind = single[case]
        errors = counters.http_errors.get(kind, 0)
        ok = errors >= e.faults_served >= 1 and e.faults_pending == 0
        return ok, f"http_errors.{kind}={errors} faults_served={e.faults_served}"
    if case == "id_gap":
        ok = counters.gaps_backfilled >= 1 and e.historical_requests >= 1
        return ok, _figures(gaps_backfilled=counters.gaps_backfilled, historical=e.historical_requests)
    if case == "bad_records":
        return e.dead_letters >= 1, f"dead_letters={e.dead_letters}"
    if case == "duplicates_sigkill":
        # A copy whose window closed before it was read is late, not a duplicate: either way once.
        ok = (
            e.restarts.get("spark", 0) >= 1
            and _batches_continue(e)
            and e.duplicates >= 1
            and e.duplicates + e.late_trades == e.injected_copies
        )
        return ok, _figures(
            copies=e.injected_copies,
            duplicates=e.duplicates,
            late=e.late_trades,
            restarts=e.restarts.get("spark", 0),
        )
    if case == "late_burst":
        ok = e.injected_late >= 1 and e.late_trades == e.injected_late
        return ok, _figures(sent_late=e.injected_late, late_topic=e.late_trades)
    if case.startswith("ws_"):
        return ws_event_counted(case, e)
    raise ValueError(f"unknown case {case!r}")


@dataclass
class Verdict:
    passed: bool
    failures: list[str]


def verdict(
    ids: IdReport,
    finals: FinalWindows,
    vs_baseline: list[str] | None,
    vs_exact: list[str],
    letters: DeadLetterReport,
    counted: bool,
    process_state: str,
    evidence: Evidence,
    conservation: Conservation,
) -> Verdict:
    """Every correctness property of one case; `vs_baseline` None when there is no baseline."""
    failures = []
    if ids.lost:
        failures.append(f"{ids.lost} trades lost")
    if ids.duplicated != evidence.injected_copies:
        failures.append(f"{ids.duplicated} trades duplicated ({evidence.injected_copies} written on purpose)")
    if not conservation.holds:
        failures.append(f"records not conserved: {conservation}")
    if ids.unexpected:
        failures.append(f"{ids.unexpected} trades in the raw topic that were never served")
    if finals.conflicts:
        failures.append(f"windows emitted final with different values: {list(finals.conflicts)[:4]}")
    if finals.bad_scale:
        failures.append(f"VWAP not at 8 places: {list(finals.bad_scale)[:4]}")
    if vs_baseline is None:
        failures.append("no baseline run to compare with")
    elif vs_baseline:
        failures.append(f"closed windows differ from the baseline: {vs_baseline[:4]}")
    if vs_exact:
        failures.append(f"closed windows differ from the exact reference: {vs_exact[:4]}")
    if letters.missing or letters.unexpected:
        failures.append(f"dead letters: {letters.missing} missing, {letters.unexpected} unexpected")
    if not counted:
        failures.append("the fault was not counted")
    if process_state not in ("alive", "restarted"):
        failures.append(f"process state: {process_state}")
    if evidence.violations:
        failures.append(f"{evidence.violations} requests sent while told to wait")
    if evidence.max_weight_per_minute > evidence.weight_budget:
        failures.append(
            f"weight budget exceeded: {evidence.max_weight_per_minute} > {evidence.weight_budget}/min"
        )
    return Verdict(not failures, failures)


def baseline_differences(
    case_windows: Mapping[str, Mapping[str, Any]] | None, baseline: Mapping[str, Mapping[str, Any]] | None
) -> list[str] | None:
    if case_windows is None or baseline is None:
        return None
    return window_differences(case_windows, baseline)


def canonical(windows: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Windows as JSON-ready text (Decimals as their exact string)."""
    return {
        key: {name: str(value) if isinstance(value, Decimal) else value for name, value in values.items()}
        for key, values in windows.items()
    }


def ws_event_counted(case: str, e: Evidence) -> tuple[bool, str]:
    """`event_counted` of the binance_ws source's cases: every fault served, and its own sign."""
    c = e.producer
    served = e.faults_served >= 1 and e.faults_pending == 0
    if case == "ws_drop":  # the first connection, then one after each of the two closes
        ok = served and c.stream_connects >= 3
        return ok, _figures(stream_connects=c.stream_connects, faults_served=e.faults_served)
    if case == "ws_skip":
        ok = served and c.gaps_backfilled >= 1 and e.historical_requests >= 1
        return ok, _figures(gaps_backfilled=c.gaps_backfilled, historical=e.historical_requests)
    if case == "ws_malformed":
        dropped = (c.stream_malformed_frames, c.stream_unknown_symbol_frames, c.stream_out_of_order_frames)
        ok = served and min(dropped) >= 2
        return ok, _figures(malformed=dropped[0], unknown_symbol=dropped[1], out_of_order=dropped[2])
    if case == "ws_stall":
        stalled = e.log_events.get("stream_stalled", 0)
        ok = served and stalled >= 1 and c.stream_connects >= 2
        return ok, _figures(stream_stalled=stalled, stream_connects=c.stream_connects)
    raise ValueError(f"unknown case {case!r}")
