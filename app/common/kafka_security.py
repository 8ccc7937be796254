"""The Kafka security settings as each client library spells them: one mapping per library.

TELEMETRY_KAFKA_SECURITY_PROTOCOL configures every client of the app the same way: the producer
and the Spark job's metrics publisher (librdkafka, `confluent_config`), the dashboard's feed and
the topic helper (kafka-python, `kafka_python_config`), and the Spark job's Kafka source and sinks
(the Java client, `spark_kafka_options`). The settings were checked when they were built
(settings.kafka_security_problem); the password is read here, from its file, each time a client
is configured, so it never sits in the settings, the environment or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.common.settings import KafkaSettings, env_name

# The one SASL mechanism offered: SCRAM keeps the password off the wire and out of the broker.
SCRAM_MECHANISM = "SCRAM-SHA-512"
_SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


@dataclass(frozen=True)
class _Credentials:
    protocol: str
    ca_file: str | None
    username: str | None
    password: str | None = field(repr=False)

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol == "SASL_SSL"


def read_password(path: Path) -> str:
    """The password file's content without its line end; an empty one is refused."""
    password = path.read_text(encoding="utf-8").rstrip("\r\n")
    if not password:
        raise ValueError(f"{env_name('kafka_sasl_password_file')}={path} is empty")
    return password


def _credentials(settings: KafkaSettings) -> _Credentials:
    sasl = settings.kafka_security_protocol == "SASL_SSL"
    password_file = settings.kafka_sasl_password_file
    return _Credentials(
        protocol=settings.kafka_security_protocol,
        ca_file=str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None,
        username=settings.kafka_sasl_username if sasl else None,
        password=read_password(password_file) if sasl and password_file else None,
    )


def confluent_config(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka settings (confluent-kafka Producer, Consumer), beside bootstrap.servers."""
    creds = _credentials(settings)
    config: dict[str, Any] = {"security.protocol": creds.protocol}
    if creds.tls:
        # librdkafka checks the broker's name against its certificate by default (https).
        config["ssl.ca.location"] = creds.ca_file
    if creds.sasl:
        config |= {"sasl.mechanism": SCRAM_MECHANISM, "sasl.username": creds.username}
        config["sasl.password"] = creds.password
    return config


def kafka_python_config(settings: KafkaSettings) -> dict[str, Any]:
    """kafka-python keyword arguments (KafkaConsumer, KafkaAdminClient), beside bootstrap_servers."""
    creds = _credentials(settings)
    config: dict[str, Any] = {"security_protocol": creds.protocol}
    if creds.tls:
        config |= {"ssl_cafile": creds.ca_file, "ssl_check_hostname": True}
    if creds.sasl:
        config |= {"sasl_mechanism": SCRAM_MECHANISM, "sasl_plain_username": creds.username}
        config["sasl_plain_password"] = creds.password
    return config


def spark_kafka_options(settings: KafkaSettings) -> dict[str, str]:
    """The Spark Kafka source's and sink's `kafka.*` options, bootstrap servers included."""
    creds = _credentials(settings)
    options = {
        "kafka.bootstrap.servers": settings.kafka_bootstrap_servers,
        "kafka.security.protocol": creds.protocol,
    }
    if creds.tls:
        # The Java client reads a PEM CA file as a trust store of its own (KIP-651): the same file
        # as the other clients, no JKS to keep in step.
        assert creds.ca_file is not None
        options |= {"kafka.ssl.truststore.type": "PEM", "kafka.ssl.truststore.location": creds.ca_file}
    if creds.sasl:
        assert creds.username is not None and creds.password is not None
        # A password config: the Java client prints it as [hidden] and Spark redacts it.
        options |= {
            "kafka.sasl.mechanism": SCRAM_MECHANISM,
            "kafka.sasl.jaas.config": (
                f"{_SCRAM_LOGIN_MODULE} required username={_jaas_quoted(creds.username)} "
                f"password={_jaas_quoted(creds.password)};"
            ),
        }
    return options


def refusal_hint(settings: KafkaSettings) -> str:
    """What to check when a TLS client finds no broker although one listens.

    kafka-python reports a failed TLS handshake or a refused SCRAM login only as "no brokers
    available" (the broker just closes the connection), so its callers add this.
    """
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return ""
    checked = ["kafka_ssl_ca_file"] + (
        ["kafka_sasl_username", "kafka_sasl_password_file"] if protocol == "SASL_SSL" else []
    )
    return (
        f" ({env_name('kafka_security_protocol')}={protocol}: the broker may have refused the TLS "
        f"handshake or the login; check {', '.join(env_name(name) for name in checked)})"
    )


def _jaas_quoted(value: str) -> str:
    # JAAS values are Java-tokenizer strings: a backslash or a quote inside must be escaped.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


__all__ = [
    "SCRAM_MECHANISM",
    "confluent_config",
    "kafka_python_config",
    "read_password",
    "refusal_hint",
    "spark_kafka_options",
]
