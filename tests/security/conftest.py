"""A real Kafka 4 broker speaking SASL_SSL only (TLS and SCRAM-SHA-512), on loopback, with
throw-away certificates and passwords made for this module's run."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.localkafka.broker import BrokerTls, LocalBroker
from tests.support.tls import TlsFiles, make_broker_tls, password_file

ADMIN = "admin"  # the broker's own inter-broker login
APP = "telemetry"  # the app's login


@dataclass(frozen=True)
class SecureKafka:
    broker: LocalBroker
    tls: TlsFiles
    app_password_file: Path
    admin_password_file: Path
    base: Path

    def env(self, **overrides: str) -> dict[str, str]:
        """The TELEMETRY_* security variables of a client that logs in as the app."""
        return {
            "TELEMETRY_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "TELEMETRY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "TELEMETRY_KAFKA_SSL_CA_FILE": str(self.tls.ca_file),
            "TELEMETRY_KAFKA_SASL_USERNAME": APP,
            "TELEMETRY_KAFKA_SASL_PASSWORD_FILE": str(self.app_password_file),
        } | overrides


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    base = tmp_path_factory.mktemp("secure-kafka")
    tls = make_broker_tls(base / "pki")
    passwords = {ADMIN: secrets.token_hex(12), APP: secrets.token_hex(12)}
    broker = LocalBroker(
        data_dir=base / "kafka",
        heap="384m",
        tls=BrokerTls(tls.keystore, tls.keystore_password, tls.ca_file, passwords),
    )
    broker.start(timeout_s=180)  # the machine is shared: give a loaded JVM time
    try:
        yield SecureKafka(
            broker,
            tls,
            password_file(base / "app.password", passwords[APP]),
            password_file(base / "admin.password", passwords[ADMIN]),
            base,
        )
    finally:
        broker.stop()
