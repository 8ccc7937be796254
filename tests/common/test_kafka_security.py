"""The Kafka security settings: refused before anything starts when they cannot work, and mapped the
same way for each client library. The live handshakes are in tests/security/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.common.kafka_security import (
    SCRAM_MECHANISM,
    confluent_config,
    kafka_python_config,
    spark_kafka_options,
)
from app.common.settings import REPO_ROOT, Settings
from tests.support.tls import password_file


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


@pytest.fixture
def secure(ca_file: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "TELEMETRY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "TELEMETRY_KAFKA_SSL_CA_FILE": str(ca_file),
        "TELEMETRY_KAFKA_SASL_USERNAME": "telemetry",
        "TELEMETRY_KAFKA_SASL_PASSWORD_FILE": str(password_file(tmp_path / "pw", 'se"cr\\et')),
    }


def refusal(env: dict[str, str]) -> str:
    with pytest.raises(SystemExit) as exc:
        Settings.from_env(env)
    return str(exc.value)


def test_plaintext_needs_nothing_and_adds_nothing() -> None:
    settings = Settings()
    assert spark_kafka_options(settings) == {
        "kafka.bootstrap.servers": "127.0.0.1:9092",
        "kafka.security.protocol": "PLAINTEXT",
    }
    assert confluent_config(settings) == {"security.protocol": "PLAINTEXT"}
    assert kafka_python_config(settings) == {"security_protocol": "PLAINTEXT"}


def test_tls_without_a_ca_file_is_refused(secure: dict[str, str]) -> None:
    del secure["TELEMETRY_KAFKA_SSL_CA_FILE"]
    assert refusal(secure) == ("TELEMETRY_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs TELEMETRY_KAFKA_SSL_CA_FILE")


def test_sasl_without_a_password_file_is_refused(secure: dict[str, str]) -> None:
    del secure["TELEMETRY_KAFKA_SASL_PASSWORD_FILE"]
    assert "needs TELEMETRY_KAFKA_SASL_PASSWORD_FILE" in refusal(secure)


def test_a_missing_ca_file_is_refused(secure: dict[str, str], tmp_path: Path) -> None:
    secure["TELEMETRY_KAFKA_SSL_CA_FILE"] = str(tmp_path / "absent.pem")
    assert (
        refusal(secure) == f"TELEMETRY_KAFKA_SSL_CA_FILE={tmp_path / 'absent.pem'}: No such file or directory"
    )


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660, 0o601])
def test_a_password_file_open_to_others_is_refused(secure: dict[str, str], mode: int) -> None:
    Path(secure["TELEMETRY_KAFKA_SASL_PASSWORD_FILE"]).chmod(mode)
    message = refusal(secure)
    assert f"is mode {mode:04o}: a secret must not be readable by other users" in message
    assert "chmod 0600" in message


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400])
def test_a_password_file_for_its_owner_and_group_is_taken(secure: dict[str, str], mode: int) -> None:
    Path(secure["TELEMETRY_KAFKA_SASL_PASSWORD_FILE"]).chmod(mode)
    assert Settings.from_env(secure).kafka_sasl_username == "telemetry"


def test_a_login_without_sasl_is_refused(secure: dict[str, str]) -> None:
    secure["TELEMETRY_KAFKA_SECURITY_PROTOCOL"] = "SSL"
    assert "a SCRAM login needs SASL_SSL" in refusal(secure)


def test_an_unknown_protocol_is_refused() -> None:
    assert "use one of PLAINTEXT, SSL, SASL_SSL" in refusal({"TELEMETRY_KAFKA_SECURITY_PROTOCOL": "TLS"})


def test_sasl_ssl_maps_to_each_library(secure: dict[str, str], ca_file: Path) -> None:
    settings = Settings.from_env(secure)
    assert confluent_config(settings) == {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(ca_file),
        "sasl.mechanism": SCRAM_MECHANISM,
        "sasl.username": "telemetry",
        "sasl.password": 'se"cr\\et',
    }
    assert kafka_python_config(settings) == {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": str(ca_file),
        "ssl_check_hostname": True,
        "sasl_mechanism": SCRAM_MECHANISM,
        "sasl_plain_username": "telemetry",
        "sasl_plain_password": 'se"cr\\et',
    }
    options = spark_kafka_options(settings)
    assert options["kafka.ssl.truststore.location"] == str(ca_file)
    # The JAAS line escapes the quote and the backslash of the password.
    assert options["kafka.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="telemetry" password="se\\"cr\\\\et";'
    )


def test_the_password_never_shows_in_the_settings(secure: dict[str, str]) -> None:
    assert "cr\\et" not in repr(Settings.from_env(secure))


@pytest.mark.parametrize("service", ["producer", "processing"])
def test_a_service_refuses_to_start_with_a_loose_password_file(secure: dict[str, str], service: str) -> None:
    Path(secure["TELEMETRY_KAFKA_SASL_PASSWORD_FILE"]).chmod(0o644)
    result = subprocess.run(
        [sys.executable, "-m", f"app.{service}"],
        env={"PATH": "/usr/bin:/bin"} | secure,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "a secret must not be readable by other users" in result.stderr
    assert "Traceback" not in result.stderr
