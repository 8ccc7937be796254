"""A service's start-up: its key=value log and a stop event that SIGTERM and Ctrl-C set (a real
process, a real signal)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

SERVICE = """
import logging, sys
from app.common.service_start import start_service
log = logging.getLogger("app.example")
stop = start_service(log, "info")
print("ready", flush=True)
if not stop.wait(30):
    sys.exit(3)
log.info("event=stopped")
"""


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT], ids=lambda sent: sent.name)
def test_a_signal_sets_the_stop_event_and_is_logged_as_a_key_value_line(sent: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVICE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(sent)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    lines = stderr.splitlines()
    assert len(lines) == 2, stderr
    assert lines[0].startswith("time=")
    assert lines[0].endswith(f" level=INFO logger=app.example event=stopping signal={sent.name}")
    assert lines[1].endswith(" level=INFO logger=app.example event=stopped")
