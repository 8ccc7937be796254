"""`make demo` as a newcomer runs it: the whole pipeline on the bundled sample, then Ctrl-C.

Runs `python -m app.demo` (broker from the Maven jars, replay source) on free loopback ports and
checks that the dashboard answers, that windows reach the aggregates topic, and that SIGINT stops
every process it started with exit status 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kafka.errors import KafkaError

from app.common.schema import WindowStats
from app.localkafka.broker import free_port, port_open
from tests.support.kafka import read_all
from tests.support.pipeline import answers_200

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_pipeline_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    kafka_port, dashboard_port = free_port(), free_port()
    log_path = tmp_path / "demo.log"
    command = [sys.executable, "-m", "app.demo", "--broker", "jars", "--port", str(kafka_port),
               "--dashboard-port", str(dashboard_port), "--run-dir", str(tmp_path / "run")]  # fmt: skip
    with log_path.open("wb") as log:
        demo = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
    bootstrap = f"127.0.0.1:{kafka_port}"
    try:
        deadline = time.monotonic() + 240
        windows: list[WindowStats] = []
        while time.monotonic() < deadline and demo.poll() is None:
            if answers_200(f"http://127.0.0.1:{dashboard_port}/_stcore/health"):
                try:
                    records = read_all(bootstrap, "aggregated_crypto_stats")
                except KafkaError:  # the broker may still be starting
                    records = []
                windows = [WindowStats.from_json(r.value) for r in records]
                if windows:
                    break
            time.sleep(2)
        assert demo.poll() is None, f"the demo exited early:\n{log_path.read_text()[-3000:]}"
        assert windows, f"no window reached the aggregates topic:\n{log_path.read_text()[-3000:]}"
        assert {w.symbol for w in windows} == {"BTCUSDT"}
        assert all(w.low <= w.vwap <= w.high for w in windows)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        try:
            status = demo.wait(timeout=90)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise
    assert status == 0, log_path.read_text()[-3000:]
    # On a busy machine a child (Spark's JVM, the broker's) can take a few seconds more than the
    # demo itself to exit.
    deadline = time.monotonic() + 15
    while _processes_mentioning(str(tmp_path / "run")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_mentioning(str(tmp_path / "run")) == [], "processes left running"
    assert not answers_200(f"http://127.0.0.1:{dashboard_port}/_stcore/health")
    assert not port_open(kafka_port)


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line or environment holds `text` (every child gets the run dir in its env)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if any(text.encode() in (proc / part).read_bytes() for part in ("cmdline", "environ")):
                found.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found
