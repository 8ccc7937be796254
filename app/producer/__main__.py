"""`python -m app.producer`: publish Binance trades (live or replayed) to the raw Kafka topic.

Configured like every process of the pipeline (TELEMETRY_* variables or --flags, see
app/common/settings.py). SIGTERM and Ctrl-C flush what is queued and exit 0.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from app.common.settings import SOURCES, Settings, parse_command_line
from app.producer.binance import BinanceSource
from app.producer.binance_ws import BinanceStreamSource
from app.producer.metrics import ProducerMetrics
from app.producer.replay import ReplayFileError, ReplaySource
from app.producer.service import ProducerService
from app.producer.source import TradeSource

log = logging.getLogger("app.producer")

# key=value lines that journald readers can grep (`journalctl -u ... | grep event=gap`).
LOG_FORMAT = "time=%(asctime)s.%(msecs)03d level=%(levelname)s logger=%(name)s %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


def build_source(settings: Settings, metrics: ProducerMetrics, stop: threading.Event) -> TradeSource:
    if settings.source == "binance":
        return BinanceSource(settings, metrics, stop)
    if settings.source == "binance_ws":
        return BinanceStreamSource(settings, metrics, stop)
    if settings.source == "replay":
        return ReplaySource(settings, stop)
    raise ValueError(f"unknown source {settings.source!r}: use one of {', '.join(SOURCES)}")


def main(argv: list[str] | None = None) -> int:
    settings = parse_command_line("producer", argv, __doc__)
    logging.basicConfig(
        level=settings.log_level.upper(), format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT, stream=sys.stderr
    )

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("event=stopping signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    metrics = ProducerMetrics(budget_per_minute=settings.weight_budget_per_minute)
    try:
        source = build_source(settings, metrics, stop)
    except (ValueError, ReplayFileError) as exc:
        log.error("event=bad_configuration error=%r", str(exc))
        return 2
    log.info(
        "event=starting source=%s symbols=%s topic=%s bootstrap=%s",
        settings.source,
        ",".join(settings.symbols),
        settings.raw_topic,
        settings.kafka_bootstrap_servers,
    )
    ProducerService(settings, source, metrics, stop).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
