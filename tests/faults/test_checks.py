"""The fault matrix's verdicts, on plain data (no Kafka, no Spark)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from app.common.schema import DeadLetter, ProducerMetric, WindowStats, metric_from_json
from app.producer.metrics import ProducerMetrics
from tests.faults import checks
from tests.faults.cases import CASE_NAMES, SIZES
from tests.faults.dataset import BAD_RECORDS, SYMBOLS, build, burst_watermark_minutes, first_window_of_run
from tests.support.conservation import Conservation
from tests.support.pipeline import expected_windows


def _row(key_start: int, vwap: str = "1.00000000", final: bool = True, count: int = 1) -> WindowStats:
    one = Decimal("1.00000000")
    return WindowStats("BTCUSDT", key_start, key_start + 60_000, one, one, one, one, Decimal(vwap), one, one,
                       count, 1, 1, key_start, final)  # fmt: skip


def test_id_continuity_counts_lost_duplicated_and_unexpected() -> None:
    served = {"BTCUSDT": [1, 2, 3, 4], "ETHUSDT": [10, 11]}
    raw = [("BTCUSDT", 1), ("BTCUSDT", 2), ("BTCUSDT", 2), ("BTCUSDT", 4), ("ETHUSDT", 10), ("ETHUSDT", 11),
           ("ETHUSDT", 12)]  # fmt: skip
    report = checks.id_continuity(served, raw)
    assert (report.lost, report.duplicated, report.unexpected) == (1, 1, 1)
    assert report.served == 6 and report.in_raw == 7


def test_id_continuity_of_an_exact_copy_is_clean() -> None:
    served = {"BTCUSDT": [1, 2, 3]}
    report = checks.id_continuity(served, [("BTCUSDT", i) for i in (3, 1, 2)])
    assert (report.lost, report.duplicated, report.unexpected) == (0, 0, 0)


def test_final_windows_tell_repeats_from_conflicts() -> None:
    rows = [_row(0), _row(0), _row(60_000), _row(60_000, count=2), _row(120_000, final=False)]
    finals = checks.final_windows(rows)
    assert finals.repeats == 1
    assert finals.conflicts == ("BTCUSDT|60000",)
    assert set(finals.windows) == {"BTCUSDT|0", "BTCUSDT|60000"}


def test_final_windows_flag_a_vwap_not_at_eight_places() -> None:
    assert checks.final_windows([_row(0, vwap="1.0")]).bad_scale == ("BTCUSDT|0",)


def test_window_differences_name_missing_extra_and_changed() -> None:
    want = {"a": {"vwap": Decimal("1")}, "b": {"vwap": Decimal("2")}}
    got = {"b": {"vwap": Decimal("3")}, "c": {"vwap": Decimal("1")}}
    assert checks.window_differences(got, want) == ["a: missing", "c: not expected", "b vwap: 3 != 2"]
    assert checks.window_differences(want, want) == []


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "replace")


def test_dead_letters_match_by_value_and_ignore_redelivery() -> None:
    written = [value for _, value in BAD_RECORDS]
    letters = [DeadLetter(f"reason {i}: x", "raw", 0, i, _text(v)) for i, v in enumerate(written)]
    report = checks.dead_letters([*letters, letters[0]], written)  # the sink is at-least-once
    assert (report.count, report.distinct, report.missing, report.unexpected) == (
        len(written) + 1, len(written), 0, 0,
    )  # fmt: skip
    assert checks.dead_letters(letters[1:], written).missing == 1
    assert checks.dead_letters(letters, []).unexpected == len(written)


def test_every_case_has_an_event_check() -> None:
    for name in CASE_NAMES:
        counted, _ = checks.event_counted(name, checks.Evidence())
        assert counted is (name == "baseline"), name


def test_counters_take_the_highest_value_across_restarts() -> None:
    first = ProducerMetric(time=1, rate_limited_429=2, polls=5, http_errors={"5xx": 1})
    after_restart = ProducerMetric(time=2, rate_limited_429=0, polls=7, http_errors={"5xx": 3, "timeout": 1})
    best = checks.max_counters([first, after_restart])
    assert best == ProducerMetric(rate_limited_429=2, polls=7, http_errors={"5xx": 3, "timeout": 1})


def test_counters_are_read_from_what_the_producer_publishes() -> None:
    metrics = ProducerMetrics(budget_per_minute=3000)
    metrics.add("gaps_backfilled")
    metrics.add("banned_418", 2)
    metrics.http_error("timeout")
    published = metric_from_json(None, metrics.to_json(now_ms=1_000))
    assert isinstance(published, ProducerMetric)
    evidence = checks.Evidence(producer=checks.max_counters([published]), historical_requests=1)
    assert checks.event_counted("id_gap", evidence) == (True, "gaps_backfilled=1 historical=1")
    assert checks.event_counted("http_418", evidence) == (True, "banned_418=2 violations=0")
    assert not checks.event_counted("http_429", evidence)[0]


def test_http_fault_counted_only_when_every_served_fault_is() -> None:
    evidence = checks.Evidence(producer=ProducerMetric(http_errors={"5xx": 2}), faults_served=3)
    assert not checks.event_counted("http_500", evidence)[0]
    evidence.producer = ProducerMetric(http_errors={"5xx": 3})
    assert checks.event_counted("http_500", evidence)[0]


def test_the_data_set_is_deterministic_and_closes_every_window() -> None:
    size = SIZES["ci"]
    first = build(11, size.per_symbol, size.windows, 0)
    assert first == build(11, size.per_symbol, size.windows, 0)
    for symbol in SYMBOLS:
        trades = [dict(t, id=i) for i, t in enumerate(first.trades[symbol])]
        assert len(expected_windows(symbol, trades)) == size.windows
        last_end = size.windows * 60_000
        assert first.closers[symbol]["time"] - 10_000 > last_end  # past the watermark
        assert max(t["time"] for t in trades) < last_end


def test_the_closers_pass_every_cases_watermark_and_are_already_past() -> None:
    now_ms = 1_796_180_000_123
    for size in SIZES.values():
        data = build(11, size.per_symbol, size.windows, first_window_of_run(size.windows, now_ms))
        last_end = data.first_window_ms + size.windows * 60_000
        for symbol in SYMBOLS:
            closing = data.closers[symbol]["time"]
            assert closing - burst_watermark_minutes(size.windows) * 60_000 > last_end
            assert closing <= now_ms  # the producer would hold a trade dated ahead of its clock


def test_the_sizes_leave_a_burst_larger_than_one_page_after_the_fault() -> None:
    for size in SIZES.values():
        assert size.burst > 1000
        assert size.per_symbol - size.fault_at * size.chunk >= size.burst


def test_late_risk_counts_trades_published_behind_another_symbols_watermark() -> None:
    # Ingested at 0 ms: up to 200 s of event time; ingested 2 s later: trades from the first minute.
    ahead = [(200_000, 0)]
    behind = [(30_000, 2_000), (150_000, 2_000), (185_000, 2_000)]
    assert checks.late_risk(ahead + behind) == 2  # windows ending at 60 s and 180 s; not 240 s
    assert checks.late_risk([(30_000, 0), (200_000, 500), (31_000, 1_000)]) == 0  # within the margin


def test_conservation_holds_only_when_every_record_has_one_place() -> None:
    whole = Conservation(
        raw=100, final_trades=80, open_trades=5, late=4, dead_letters=6, duplicates=5, job_records=100
    )
    assert whole.holds
    assert not dataclasses.replace(whole, duplicates=4).holds  # one record gone silently
    assert not dataclasses.replace(whole, final_trades=81).holds  # one counted twice
    assert not dataclasses.replace(whole, job_records=99).holds  # the job read fewer than the topic holds


def test_repeated_deliveries_and_late_trades_counted_exactly() -> None:
    e = checks.Evidence(injected_copies=75, duplicates=70, late_trades=5, restarts={"spark": 1})
    e.spark_batches_before, e.spark_batches_after = {"ledger": 9}, {"ledger": 10}
    assert checks.event_counted("duplicates_sigkill", e)[0]
    assert not checks.event_counted("duplicates_sigkill", dataclasses.replace(e, duplicates=69))[0]
    late = checks.Evidence(injected_late=40, late_trades=40)
    assert checks.event_counted("late_burst", late)[0]
    assert not checks.event_counted("late_burst", dataclasses.replace(late, late_trades=39))[0]


def test_a_stream_case_is_counted_only_with_its_own_sign_and_every_fault_served() -> None:
    signs = {
        "ws_drop": ProducerMetric(stream_connects=3),
        "ws_skip": ProducerMetric(gaps_backfilled=1),
        "ws_malformed": ProducerMetric(
            stream_malformed_frames=2, stream_unknown_symbol_frames=2, stream_out_of_order_frames=2
        ),
        "ws_stall": ProducerMetric(stream_connects=2),
    }
    assert sorted(signs) == sorted(n for n in CASE_NAMES if n.startswith("ws_"))
    for case, counters in signs.items():
        seen = checks.Evidence(
            producer=counters, faults_served=1, historical_requests=1, log_events={"stream_stalled": 1}
        )
        assert checks.event_counted(case, seen)[0], case
        assert not checks.event_counted(case, checks.Evidence(faults_served=1))[0], case
        unserved = checks.Evidence(
            producer=counters, faults_served=1, faults_pending=1, historical_requests=1,
            log_events={"stream_stalled": 1},
        )  # fmt: skip
        assert not checks.event_counted(case, unserved)[0], f"{case}: a fault never served"
