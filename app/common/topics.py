"""Create the pipeline's topics idempotently (the demo and tests; Ansible does it on hosts)."""

from __future__ import annotations

import contextlib
import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from app.common.settings import Settings

log = logging.getLogger(__name__)

# The raw topic is the Kappa log: kept long enough to reprocess everything from it.
RAW_RETENTION_MS = str(30 * 24 * 3600 * 1000)


def ensure_topics(settings: Settings, partitions: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, client_id="telemetry-setup")
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(settings.raw_topic, partitions, 1, topic_configs={"retention.ms": RAW_RETENTION_MS}),
            NewTopic(settings.aggregates_topic, partitions, 1),
            NewTopic(settings.dead_letter_topic, 1, 1),
            NewTopic(settings.metrics_topic, 1, 1),
        ]
        missing = [topic for topic in wanted if topic.name not in existing]
        if missing:
            # Another process may create a topic between the listing and the request.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
            log.info("created topics %s", ",".join(topic.name for topic in missing))
    finally:
        admin.close()
