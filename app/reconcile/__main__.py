"""`python -m app.reconcile`: check every final window against the exchange's 1-minute kline.

Reads the final windows of the aggregates topic, fetches the exchange's klines for their minutes
(batched, within the weight budget it shares with the producer) and writes one reconciliation
record per window to the reconciliation topic. Configured like every process of the pipeline
(TELEMETRY_* variables or --flags). SIGTERM and Ctrl-C stop it cleanly.
"""

from __future__ import annotations

import logging
import sys

from app.common.service_start import start_service
from app.common.settings import parse_command_line
from app.reconcile.service import Reconciler

log = logging.getLogger("app.reconcile")


def main(argv: list[str] | None = None) -> int:
    settings = parse_command_line("reconcile", argv, __doc__)
    stop = start_service(log, settings.log_level)
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
