"""Streaming-query progress -> `SparkMetric` JSON on the metrics topic (key b"spark").

`progress_metric` is pure (progress JSON in, `SparkMetric` out); `MetricsPublisher` is the I/O: a
pyspark StreamingQueryListener that produces each metric to Kafka from the driver.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from confluent_kafka import Producer
from pyspark.sql.streaming.listener import StreamingQueryListener

from app.common.schema import SparkMetric

log = logging.getLogger(__name__)

METRICS_KEY = SparkMetric.SOURCE.encode()


def _iso_to_ms(text: str | None) -> int | None:
    if not text:
        return None
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def progress_metric(progress: dict[str, Any]) -> SparkMetric:
    """One micro-batch's progress (StreamingQueryProgress.json, parsed) as the metric we publish.
    Late trades are not counted here: the job routes each one to the late-trades topic and counts
    it exactly in its `SparkLedger`."""
    watermark = _iso_to_ms((progress.get("eventTime") or {}).get("watermark"))
    operators = progress.get("stateOperators") or []
    duration = progress.get("batchDuration")
    if duration is None:
        duration = (progress.get("durationMs") or {}).get("triggerExecution")
    return SparkMetric(
        query=progress.get("name") or "",
        batch_id=progress.get("batchId", 0),
        time=_iso_to_ms(progress.get("timestamp")) or 0,
        num_input_rows=progress.get("numInputRows", 0),
        # Before the first event Spark reports the epoch as watermark: no watermark yet.
        watermark=watermark or None,
        input_rows_per_second=progress.get("inputRowsPerSecond"),
        processed_rows_per_second=progress.get("processedRowsPerSecond"),
        batch_duration_ms=duration,
        state_rows=sum(int(op.get("numRowsTotal", 0)) for op in operators),
    )


class MetricsPublisher(StreamingQueryListener):
    """Publishes every query's progress to the metrics topic; never lets a Kafka error stop a query."""

    def __init__(self, bootstrap_servers: str, topic: str, security: Mapping[str, Any]) -> None:
        """`security` is the librdkafka form of the Kafka security settings (confluent_config)."""
        super().__init__()
        self.topic = topic
        self._producer: Producer | None = Producer(
            {"bootstrap.servers": bootstrap_servers, "client.id": "spark-metrics", "linger.ms": 20}
            | dict(security)
        )

    def onQueryStarted(self, event: Any) -> None:
        log.info("query %s started (id %s)", event.name, event.id)

    def onQueryProgress(self, event: Any) -> None:
        if self._producer is None:
            return
        try:
            metric = progress_metric(json.loads(event.progress.json))
            self._producer.produce(self.topic, key=METRICS_KEY, value=metric.to_json())
            self._producer.poll(0)
            log.debug("progress %s", metric)
        except Exception:  # the listener runs on Spark's callback thread: log, never raise
            log.exception("could not publish streaming progress")

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        if event.exception:
            log.error("query %s terminated with error: %s", event.id, event.exception)
        else:
            log.info("query %s stopped", event.id)

    def close(self, timeout_s: float = 10.0) -> None:
        if self._producer is None:
            return
        remaining = self._producer.flush(timeout_s)
        if remaining:
            log.warning("%d metric records not delivered at shutdown", remaining)
        # Drop the producer now: pyspark may keep the listener alive, and an idle librdkafka
        # client would go on reconnecting to a broker that may be gone.
        self._producer = None
