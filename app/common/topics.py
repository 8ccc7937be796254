"""The pipeline's topics: one table, from which the demo and tests create them (`ensure_topics`).

On hosts the kafka role creates them; its `kafka_topics` list is tested equal to this table
(tests/ansible/test_topics.py), names included: each topic is named by a setting, and the role
takes the names from the pipeline's settings.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import NoBrokersAvailable, TopicAlreadyExistsError

from app.common.kafka_security import kafka_python_config, refusal_hint
from app.common.settings import KafkaSettings

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    """One topic; `scaled` topics get the deployment's partition count, the others one partition."""

    setting: str  # the KafkaSettings field holding its name
    scaled: bool
    retention_ms: int
    # Whether writes need min.insync.replicas acknowledgements: the metrics are best effort.
    durable: bool = True
    cleanup_policy: str = "delete"


TOPICS = (
    # The Kappa log: kept long enough to rebuild every aggregate from it.
    Topic("raw_topic", scaled=True, retention_ms=30 * DAY_MS),
    Topic("aggregates_topic", scaled=True, retention_ms=7 * DAY_MS),
    # As long as the raw trades, so a rejected record can be looked at beside its neighbours.
    Topic("dead_letter_topic", scaled=False, retention_ms=30 * DAY_MS),
    # Each late trade as it arrived, with the window it missed: as long as the raw trades.
    Topic("late_trades_topic", scaled=False, retention_ms=30 * DAY_MS),
    Topic("metrics_topic", scaled=False, retention_ms=DAY_MS, durable=False),
    # One small record per symbol and minute: a month of evidence that the windows matched.
    Topic("reconciliation_topic", scaled=False, retention_ms=30 * DAY_MS),
)


@dataclass(frozen=True)
class TopicSpec:
    """A topic as a deployment creates it."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


def topic_specs(
    settings: KafkaSettings, partitions: int = 1, replication_factor: int = 1, min_insync_replicas: int = 1
) -> list[TopicSpec]:
    specs = []
    for topic in TOPICS:
        configs = {"retention.ms": str(topic.retention_ms), "cleanup.policy": topic.cleanup_policy}
        if topic.durable:
            configs["min.insync.replicas"] = str(min_insync_replicas)
        name = str(getattr(settings, topic.setting))
        specs.append(TopicSpec(name, partitions if topic.scaled else 1, replication_factor, configs))
    return specs


def ensure_topics(
    settings: KafkaSettings, partitions: int = 1, replication_factor: int = 1, min_insync_replicas: int = 1
) -> None:
    """Create the topics that are missing, as `topic_specs` describes them (a cluster: RF 3, ISR 2)."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id="telemetry-setup",
            **kafka_python_config(settings),
        )
    except NoBrokersAvailable as exc:
        raise NoBrokersAvailable(
            f"no broker available at {settings.kafka_bootstrap_servers}{refusal_hint(settings)}"
        ) from exc
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(spec.name, spec.partitions, spec.replication_factor, topic_configs=spec.configs)
            for spec in topic_specs(settings, partitions, replication_factor, min_insync_replicas)
        ]
        missing = [topic for topic in wanted if topic.name not in existing]
        if missing:
            # Another process may create a topic between the listing and the request.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
            log.info("created topics %s", ",".join(topic.name for topic in missing))
    finally:
        admin.close()
