"""`python -m app.processing` as a real process: SIGKILL mid-stream, restart on the same checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.common.schema import DeadLetter, WindowStats
from app.common.settings import Settings
from app.core.windows import aggregate_all
from app.localkafka.broker import LocalBroker
from tests.processing import dataset
from tests.processing.conftest import (
    expected_final_keys,
    job_environment,
    job_settings,
    output_complete,
    prepare_topics,
    spark_metrics,
    wait_until,
    windows_by_finality,
    write_records,
)
from tests.support.conservation import newest_ledgers
from tests.support.kafka import read_all

REPO_ROOT = Path(__file__).resolve().parents[2]


def _start(settings: Settings, log_path: Path, local_dir: Path) -> subprocess.Popen[bytes]:
    """The job, its Spark local directories (shuffle files, state-store copies) in `local_dir`."""
    local_dir.mkdir()
    with open(log_path, "wb") as log:
        # Its own process group, so SIGKILL takes down the driver JVM with the Python process.
        return subprocess.Popen(
            [sys.executable, "-m", "app.processing"],
            cwd=REPO_ROOT,
            env=job_environment(settings) | {"SPARK_LOCAL_DIRS": str(local_dir)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _running_in_group(group: int) -> list[int]:
    """The processes of process group `group` that have not exited (a zombie has: spark-submit's
    launcher leaves one to init, which reaps it when it gets to it)."""
    running = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, process_group = fields[0], int(fields[2])
        if process_group == group and state not in ("Z", "X"):
            running.append(int(stat.parent.name))
    return running


def _dead_letters(settings: Settings) -> list[tuple[bytes | None, DeadLetter]]:
    """(Kafka key, letter) of each dead letter."""
    return [
        (r.key, DeadLetter.from_json(r.value))
        for r in read_all(settings.kafka_bootstrap_servers, settings.dead_letter_topic)
    ]


def _consumed(settings: Settings) -> int:
    _, ledgers = spark_metrics(settings.kafka_bootstrap_servers, settings.metrics_topic)
    return sum(ledger.records for ledger in newest_ledgers(ledgers).values())


def test_sigkill_and_restart_with_repeated_deliveries_leave_every_window_exact(
    kafka_broker: LocalBroker, tmp_path: Path
) -> None:
    """Repeats of trade ids before the kill, and after it of trades read before it: every window
    equals the exact reference of the first deliveries, conflicts are dead letters, every record is
    accounted for once, and the stop logs no error."""
    records = dataset.build(repeats=True)
    split = dataset.start_of_phase_d(records)
    settings = job_settings(kafka_broker.bootstrap_servers, tmp_path / "checkpoints", "crash")
    prepare_topics(settings, records[:split])
    bootstrap = settings.kafka_bootstrap_servers

    first = _start(settings, tmp_path / "first.log", tmp_path / "first-local")
    try:
        wait_until(lambda: _consumed(settings) >= split, 240, "every record before the kill read")
        assert not output_complete(settings, records), "the job finished before it could be killed"
    finally:
        _kill_group(first)
    assert first.returncode == -signal.SIGKILL
    before, _ = spark_metrics(bootstrap, settings.metrics_topic)
    write_records(bootstrap, settings.raw_topic, records[split:], already=split)

    second = _start(settings, tmp_path / "second.log", tmp_path / "second-local")
    try:
        wait_until(lambda: output_complete(settings, records), 300, "final windows after the restart")
        time.sleep(2)  # let the no-data batch that follows run, then stop as systemd would
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, (tmp_path / "second.log").read_text()[-3000:]
        # Nothing of it is left for systemd's SIGKILL to cut short: the JVM exited, and its shutdown
        # hooks removed its local directories.
        assert not _running_in_group(second.pid), "the job's JVM outlived its Python process"
        assert not list((tmp_path / "second-local").iterdir())
    finally:
        _kill_group(second)
    log = (tmp_path / "second.log").read_text()
    assert " ERROR " not in log, log[-3000:]

    # Every window equals the exact reference of the first deliveries (the repeats shift the
    # data set's ids, so the uninterrupted run's windows are not this one's).
    finals, live = windows_by_finality(read_all(bootstrap, settings.aggregates_topic))
    reference = aggregate_all(dataset.valid_trades(records))
    assert finals.keys() == expected_final_keys(records)
    for key, values in finals.items():
        assert {WindowStats.from_json(v) for v in values} == {
            dataclasses.replace(reference[key], is_final=True)
        }
    assert {key: WindowStats.from_json(value) for key, value in live.items()} == reference

    keyed_letters = _dead_letters(settings)
    letters = [letter for _, letter in keyed_letters]
    conflicts = [r for r in records if r.repeat == "conflict"]
    assert sorted(
        d.reason for d in letters if "delivered again with different content" in d.reason
    ) == sorted(
        f"trade_id {r.trade.trade_id} delivered again with different content (the first delivery was kept)"
        for r in conflicts
        if r.trade is not None
    )
    offsets = {i: r for i, r in enumerate(records)}
    assert {d.offset for d in letters} == {
        i for i, r in offsets.items() if r.trade is None or r.repeat == "conflict"
    }
    # Each quotes its record as it arrived (a conflict reaches the processor without its raw text),
    # under the record's key.
    assert [d.value for d in letters] == [
        (offsets[d.offset].value or b"").decode("utf-8", errors="replace") for d in letters
    ]
    assert [key for key, _ in keyed_letters] == [offsets[d.offset].key for d in letters]

    metrics, ledgers = spark_metrics(bootstrap, settings.metrics_topic)
    counts = newest_ledgers(ledgers).values()
    duplicates = sum(1 for r in records if r.repeat == "duplicate")
    assert sum(c.duplicates for c in counts) == duplicates
    assert sum(c.conflicts for c in counts) == len(conflicts)
    late = read_all(bootstrap, settings.late_trades_topic)
    assert len({(json.loads(r.value)["partition"], json.loads(r.value)["offset"]) for r in late}) == sum(
        1 for r in records if r.late
    )
    final_trades = sum(WindowStats.from_json(v[0]).trade_count for v in finals.values())
    open_trades = sum(c.open_trades for c in counts)
    assert (
        len(records) == final_trades + open_trades + sum(c.late for c in counts) + len(letters) + duplicates
    )
    assert sum(c.records for c in counts) == len(records)

    # The restart resumed from its checkpoint: its batch ids continue from the kill's (the last one
    # again when the kill came before its commit), where a lost checkpoint would start again at 0.
    after = [m for m in metrics if m not in before]
    assert after and min(m.batch_id for m in after) >= max(m.batch_id for m in before) > 0
