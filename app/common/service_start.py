"""What a long-running service of the pipeline sets up before it works: its log and its stop event.

systemd stops a unit with SIGTERM and a developer with Ctrl-C (SIGINT); both only set an event that
the service's loops watch, so it finishes what is in flight and exits by its own code path.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

# key=value lines that journald readers can grep (`journalctl -u ... | grep event=gap`).
LOG_FORMAT = "time=%(asctime)s.%(msecs)03d level=%(levelname)s logger=%(name)s %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


def stop_on_signals(announce: Callable[[signal.Signals], None]) -> threading.Event:
    """An event that SIGTERM and SIGINT set, after `announce` has been told which one came."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        announce(signal.Signals(signum))
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def start_service(log: logging.Logger, level: str) -> threading.Event:
    """Log key=value lines at `level` to stderr; the stop event, logged on `log` as event=stopping."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT, stream=sys.stderr)
    return stop_on_signals(lambda received: log.info("event=stopping signal=%s", received.name))
