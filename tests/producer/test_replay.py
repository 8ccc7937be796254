"""The replay source: file loading, endless looping, resume and rebasing."""

from __future__ import annotations

import itertools
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from app.common.schema import Trade
from app.common.settings import Settings
from app.producer.replay import ReplayFileError, ReplayPlan, ReplaySource, load_plan

ROWS = [
    "10,67000.01000000,0.10000000,6700.001,1736942400000000,True,True",
    "11,67000.02000000,0.20000000,13400.004,1736942400500000,False,True",
    "12,67000.03000000,0.30000000,20100.009,1736942401000000,True,True",
]


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "BTCUSDT-trades.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_loop_shifts_ids_and_times_so_the_stream_stays_continuous(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, ROWS), "BTCUSDT")
    stream = [plan.at(i) for i in range(9)]
    assert [t.trade_id for t in stream] == list(range(10, 19))
    times = [t.trade_time for t in stream]
    # Microseconds in the file, milliseconds out; one mean gap (500 ms) between passes.
    assert times[:3] == [1736942400000, 1736942400500, 1736942401000]
    assert times[3] == 1736942401500
    assert all(b > a for a, b in itertools.pairwise(times))
    assert stream[4].price == Decimal("67000.02000000")


def test_index_after_finds_the_next_trade_in_any_pass(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, ROWS), "BTCUSDT")
    assert plan.index_after(3) == 0
    assert plan.index_after(10) == 1
    assert plan.index_after(12) == 3
    assert plan.index_after(16) == 7
    for index in range(20):
        assert plan.index_after(plan.at(index).trade_id) == index + 1


def test_ids_with_holes_resume_correctly() -> None:
    trades = [
        Trade(i, "BTCUSDT", Decimal("1"), Decimal("1"), Decimal("1"), 1_700_000_000_000 + i, False)
        for i in (5, 7, 8)
    ]
    plan = ReplayPlan.from_trades(trades)
    assert [plan.at(i).trade_id for i in range(6)] == [5, 7, 8, 9, 11, 12]
    assert plan.index_after(6) == 1
    assert plan.index_after(10) == 4


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (
            [*ROWS[:2], "13,oops,0.1,1,1736942402000000,True,True"],
            r"BTCUSDT-trades.csv:3: price is not a decimal",
        ),
        ([ROWS[1], ROWS[0]], "out of id or time order"),
        ([], "no trades"),
    ],
)
def test_bad_files_fail_with_file_and_line(tmp_path: Path, lines: list[str], reason: str) -> None:
    with pytest.raises(ReplayFileError, match=reason):
        load_plan(_write(tmp_path, lines), "BTCUSDT")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayFileError, match="cannot read replay file"):
        load_plan(tmp_path / "absent.csv", "BTCUSDT")


def test_as_fast_as_possible_keeps_file_times_and_resumes_after_the_last_id(tmp_path: Path) -> None:
    settings = Settings(replay_file=_write(tmp_path, ROWS), replay_speed=0)
    source = ReplaySource(settings, threading.Event())
    source.resume({})
    first = source.next_batch()
    assert len(first) == 1000
    assert [t.trade_id for t in first[:4]] == [10, 11, 12, 13]
    assert first[0].trade_time == 1736942400000
    assert first[0].ingest_time > 0
    source.resume({"BTCUSDT": first[499]})
    assert source.next_batch()[0].trade_id == first[500].trade_id


def test_real_time_replay_rebases_to_now_and_paces(tmp_path: Path) -> None:
    settings = Settings(replay_file=_write(tmp_path, ROWS), replay_speed=2.0)
    source = ReplaySource(settings, threading.Event())
    start_ms = time.time_ns() // 1_000_000
    source.resume({})
    collected: list[Trade] = []
    deadline = time.monotonic() + 0.9
    while time.monotonic() < deadline:
        collected.extend(source.next_batch())
    # File gaps of 500 ms at speed 2: one trade every 250 ms, the first one now.
    assert 3 <= len(collected) <= 5
    assert abs(collected[0].trade_time - start_ms) < 200
    assert collected[1].trade_time - collected[0].trade_time == 250
    assert all(t.trade_time <= t.ingest_time + 5 for t in collected)


def test_real_time_resume_never_goes_back_behind_the_topic(tmp_path: Path) -> None:
    settings = Settings(replay_file=_write(tmp_path, ROWS), replay_speed=1.0)
    source = ReplaySource(settings, threading.Event())
    future = time.time_ns() // 1_000_000 + 60_000
    last = Trade(11, "BTCUSDT", Decimal("1"), Decimal("1"), Decimal("1"), future, False)
    source.resume({"BTCUSDT": last})
    # The next trade is due at the topic's last time, a minute from now: nothing yet.
    assert source.next_batch() == []


def test_the_bundled_sample_loads() -> None:
    plan = load_plan(Settings().replay_file, "BTCUSDT")
    assert 2000 <= len(plan.trades) <= 10_000
    duration_ms = plan.trades[-1].trade_time - plan.trades[0].trade_time
    assert 15 * 60_000 <= duration_ms <= 25 * 60_000
