"""`python -m app.processing` as a real process: SIGKILL mid-stream, restart on the same checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app.common.settings import Settings
from app.localkafka.broker import LocalBroker
from tests.processing import dataset
from tests.processing.conftest import (
    PROBE_SYMBOL,
    JobRun,
    job_environment,
    job_settings,
    output_complete,
    prepare_topics,
    spark_metrics,
    wait_until,
    windows_by_finality,
)
from tests.support.kafka import read_all

REPO_ROOT = Path(__file__).resolve().parents[2]


def _start(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        # Its own process group, so SIGKILL takes down the driver JVM with the Python process.
        return subprocess.Popen(
            [sys.executable, "-m", "app.processing"],
            cwd=REPO_ROOT,
            env=job_environment(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _dead_letters(settings: Settings) -> set[tuple[Any, ...]]:
    letters = [
        json.loads(r.value) for r in read_all(settings.kafka_bootstrap_servers, settings.dead_letter_topic)
    ]
    return {(d["reason"], d["partition"], d["offset"], d["value"]) for d in letters}


def test_sigkill_and_restart_give_the_uninterrupted_result(
    job_run: JobRun, kafka_broker: LocalBroker, tmp_path: Path
) -> None:
    records = dataset.build()
    settings = job_settings(kafka_broker.bootstrap_servers, tmp_path / "checkpoints", "crash")
    prepare_topics(settings, records)
    bootstrap = settings.kafka_bootstrap_servers

    first = _start(settings, tmp_path / "first.log")
    try:
        wait_until(lambda: len(read_all(bootstrap, settings.aggregates_topic)) >= 10, 240, "first live rows")
        assert not output_complete(settings, records), "the job finished before it could be killed"
    finally:
        _kill_group(first)
    assert first.returncode == -signal.SIGKILL
    killed_at = int(time.time() * 1000)
    before = spark_metrics(bootstrap, settings.metrics_topic)

    second = _start(settings, tmp_path / "second.log")
    try:
        wait_until(lambda: output_complete(settings, records), 300, "final windows after the restart")
        time.sleep(2)  # let the no-data batch that follows run, then stop as systemd would
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, (tmp_path / "second.log").read_text()[-3000:]
    finally:
        _kill_group(second)

    finals, live = windows_by_finality(read_all(bootstrap, settings.aggregates_topic))
    want_finals, want_live = windows_by_finality(job_run.aggregates)
    want_live.pop(f"{PROBE_SYMBOL}|{dataset.T0 + 6 * dataset.MINUTE}")
    assert {k: set(v) for k, v in finals.items()} == {k: set(v) for k, v in want_finals.items()}
    assert live == want_live
    assert _dead_letters(settings) == _dead_letters(job_run.settings)

    # The restart resumed from its checkpoint: no query began again at batch 0. The two windowed
    # queries always run again (the watermark moves); the dead-letter query only when records were
    # left for it, which it may not have been if it read the whole topic before the kill.
    after = spark_metrics(bootstrap, settings.metrics_topic)[len(before) :]
    assert after and all(m.time >= killed_at - 1_000 for m in after)
    ran_again = {m.query for m in after}
    assert {"live", "final"} <= ran_again, ran_again
    for query in ran_again:
        done_before = max((m.batch_id for m in before if m.query == query), default=-1)
        first_after = min(m.batch_id for m in after if m.query == query)
        assert first_after > done_before >= 0, (query, done_before, first_after)
