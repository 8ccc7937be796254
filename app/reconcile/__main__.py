"""`python -m app.reconcile`: check every final window against the exchange's 1-minute kline.

Reads the final windows of the aggregates topic, fetches the exchange's klines for their minutes
(batched, within the weight budget it shares with the producer) and writes one reconciliation
record per window to the reconciliation topic. Configured like every process of the pipeline
(TELEMETRY_* variables or --flags). SIGTERM and Ctrl-C stop it cleanly.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from app.common.settings import parse_command_line
from app.producer.__main__ import LOG_DATE_FORMAT, LOG_FORMAT
from app.reconcile.service import Reconciler

log = logging.getLogger("app.reconcile")


def main(argv: list[str] | None = None) -> int:
    settings = parse_command_line("reconcile", argv, __doc__)
    logging.basicConfig(
        level=settings.log_level.upper(), format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT, stream=sys.stderr
    )
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("event=stopping signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if settings.source != "replay":  # both live sources trade on the exchange whose klines it reads
        Reconciler(settings, stop).run()
    else:
        # Replayed trades are not the exchange's: its klines would disagree with every window. The
        # service still runs, as every unit of the pipeline does, and starts checking when the
        # source changes (a change of source restarts it).
        log.info("event=idle reason=%r", f"source {settings.source} has no exchange klines to check against")
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
