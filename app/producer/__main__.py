"""`python -m app.producer`: publish Binance trades (live or replayed) to the raw Kafka topic.

Configured like every process of the pipeline (TELEMETRY_* variables or --flags, see
app/common/settings.py). SIGTERM and Ctrl-C flush what is queued and exit 0.
"""

from __future__ import annotations

import logging
import sys
import threading

from app.common.service_start import start_service
from app.common.settings import SOURCES, Settings, parse_command_line
from app.producer.binance import BinanceSource
from app.producer.binance_ws import BinanceStreamSource
from app.producer.metrics import ProducerMetrics
from app.producer.replay import ReplayFileError, ReplaySource
from app.producer.service import ProducerService
from app.producer.source import TradeSource

log = logging.getLogger("app.producer")


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
    stop = start_service(log, settings.log_level)
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
