"""`python -m app.processing`: run the streaming job until SIGTERM or Ctrl-C.

Spark job: raw trades -> 1-minute VWAP windows on Kafka. Configured like every process of the
pipeline (TELEMETRY_* variables or the --flags below).
"""

from __future__ import annotations

import logging
import sys

from app.common.service_start import stop_on_signals
from app.common.settings import parse_command_line
from app.processing.job import start_job
from app.processing.session import MasterUnreachable, build_session, stop_session

log = logging.getLogger("app.processing")


def main(argv: list[str] | None = None) -> int:
    settings = parse_command_line("processing", argv, __doc__)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # py4j logs every callback at INFO; the job's own logs are what a journald reader wants.
    logging.getLogger("py4j").setLevel(logging.WARNING)

    stop = stop_on_signals(lambda received: log.info("signal %d: stopping", received))

    try:
        spark = build_session(settings, write_class_archive=True)
    except MasterUnreachable as exc:
        log.error("%s", exc)
        return 2
    job = start_job(spark, settings)
    log.info(
        "streaming %s -> %s on %s, checkpoints in %s",
        settings.raw_topic,
        settings.aggregates_topic,
        settings.spark_master,
        settings.checkpoint_dir,
    )
    status = 0
    try:
        job.await_until(stop)
    except RuntimeError:
        log.exception("streaming job failed")
        status = 1
    finally:
        job.stop()
        stop_session(spark)
    return status


if __name__ == "__main__":
    sys.exit(main())
