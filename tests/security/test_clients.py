"""Each Kafka client library of the app against a SASL_SSL-only broker: it gets in with the app's
settings, and is refused, saying why, with a wrong password or without the broker's CA."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import NoBrokersAvailable

from app.common.kafka_security import confluent_config, kafka_python_config
from app.common.settings import Settings
from app.common.topics import ensure_topics, topic_specs
from app.dashboard.feed import FeedState, WindowFeed
from app.producer.kafka_io import TailError, read_tail
from tests.security.conftest import SecureKafka
from tests.support.kafka import unique_topic
from tests.support.pipeline import REPO_ROOT
from tests.support.tls import make_ca, password_file

TOPIC_SETTINGS = ("raw_topic", "aggregates_topic", "dead_letter_topic", "metrics_topic")


def settings_for(kafka: SecureKafka, **overrides: str) -> Settings:
    topics = {f"TELEMETRY_{name.upper()}": unique_topic(name.split("_")[0]) for name in TOPIC_SETTINGS}
    return Settings.from_env(kafka.env(**overrides) | topics)


def topic_names(settings: Settings) -> set[str]:
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, **kafka_python_config(settings)
    )
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_the_admin_helper_creates_the_topics_over_sasl_ssl(secure_kafka: SecureKafka) -> None:
    settings = settings_for(secure_kafka)
    ensure_topics(settings, partitions=2)
    assert {spec.name for spec in topic_specs(settings)} <= topic_names(settings)


def test_the_producers_client_reads_the_tail_over_sasl_ssl(secure_kafka: SecureKafka) -> None:
    settings = settings_for(secure_kafka)
    ensure_topics(settings)
    tail = read_tail(
        settings.kafka_bootstrap_servers,
        settings.raw_topic,
        ["BTCUSDT"],
        timeout_s=30,
        security=confluent_config(settings),
    )
    assert tail == {}


@pytest.fixture
def wrong_password(secure_kafka: SecureKafka, tmp_path: Path) -> dict[str, str]:
    path = password_file(tmp_path / "wrong.password", "not-the-password")
    return {"TELEMETRY_KAFKA_SASL_PASSWORD_FILE": str(path)}


@pytest.fixture
def other_ca(tmp_path: Path) -> dict[str, str]:
    """A CA that did not sign the broker's certificate: the client cannot trust the broker."""
    cert, _ = make_ca(tmp_path / "other-ca", "someone-else")
    return {"TELEMETRY_KAFKA_SSL_CA_FILE": str(cert)}


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        ("wrong_password", "SASL authentication error: Authentication failed"),
        ("other_ca", "certificate verify failed"),
    ],
)
def test_librdkafka_is_refused_and_logs_why(
    secure_kafka: SecureKafka,
    refusal: str,
    reason: str,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_for(secure_kafka, **request.getfixturevalue(refusal))
    with pytest.raises(TailError, match="cannot reach Kafka"):
        read_tail(
            settings.kafka_bootstrap_servers,
            settings.raw_topic,
            ["BTCUSDT"],
            timeout_s=10,
            security=confluent_config(settings),
        )
    # librdkafka says why in its log (the producer's journal), not in the exception.
    logged = [r.getMessage() for r in caplog.records if r.name == "librdkafka"]
    assert any(reason in message for message in logged), logged[:3]


@pytest.mark.parametrize("refusal", ["wrong_password", "other_ca"])
def test_the_admin_helper_is_refused_and_says_what_to_check(
    secure_kafka: SecureKafka, refusal: str, request: pytest.FixtureRequest
) -> None:
    settings = settings_for(secure_kafka, **request.getfixturevalue(refusal))
    with pytest.raises(NoBrokersAvailable, match="may have refused the TLS handshake or the login"):
        ensure_topics(settings)


@pytest.mark.parametrize("refusal", ["wrong_password", "other_ca"])
def test_the_dashboard_feed_is_refused_and_says_what_to_check(
    secure_kafka: SecureKafka, refusal: str, request: pytest.FixtureRequest
) -> None:
    settings = settings_for(secure_kafka, **request.getfixturevalue(refusal))
    feed = WindowFeed.from_settings(settings, timeout_s=5.0)
    try:
        feed.poll()
        status = feed.status()
    finally:
        feed.close()
    assert status.state is FeedState.UNREACHABLE
    assert "may have refused the TLS handshake or the login" in status.message
    assert "TELEMETRY_KAFKA_SASL_PASSWORD_FILE" in status.message


def test_the_producer_service_says_its_login_was_refused(
    secure_kafka: SecureKafka, wrong_password: dict[str, str], tmp_path: Path
) -> None:
    settings = settings_for(secure_kafka)
    ensure_topics(settings)
    env = {
        **secure_kafka.env(**wrong_password),
        "TELEMETRY_RAW_TOPIC": settings.raw_topic,
        "TELEMETRY_METRICS_TOPIC": settings.metrics_topic,
        "TELEMETRY_BINANCE_BASE_URL": "http://127.0.0.1:9",  # never reached: Kafka comes first
        "PATH": "/usr/bin:/bin",
    }
    log = tmp_path / "producer.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.producer"], env=env, cwd=REPO_ROOT, stdout=out, stderr=out
        )
        try:
            deadline = time.monotonic() + 60
            while "tail_unavailable" not in log.read_text() and time.monotonic() < deadline:
                assert process.poll() is None, log.read_text()
                time.sleep(0.5)
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert "Authentication failed" in log.read_text(), log.read_text()
