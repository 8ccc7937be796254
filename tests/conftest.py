"""Shared fixtures: one real Apache Kafka 4 broker (KRaft) on loopback for the whole session, and a
3-node cluster for the tests that ask for it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.localkafka.broker import LocalBroker, LocalCluster

# Spark and every server a test starts bind to loopback only.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker shared by the session; tests isolate themselves with unique topic names."""
    broker = LocalBroker(data_dir=Path(tmp_path_factory.mktemp("kafka")))
    broker.start(timeout_s=180)  # a loaded 2-core machine can take over a minute to start a JVM
    yield broker
    broker.stop()


@pytest.fixture
def bootstrap(kafka_broker: LocalBroker) -> str:
    return kafka_broker.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three broker+controller nodes (the three voters) on loopback, shared by the tests that ask
    for it: each leaves it healthy, and starting three JVMs is what takes long."""
    cluster = LocalCluster(data_dir=Path(tmp_path_factory.mktemp("cluster")))
    cluster.start()
    yield cluster
    cluster.stop()
