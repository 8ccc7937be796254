"""The kafka role's container health check (ready.sh) against a real Kafka 4 broker.

The probe is a bash script that speaks the Kafka protocol itself, so it is run here exactly as the
container runs it, rendered from the role's template, against the session's KRaft broker.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest

from app.localkafka.broker import LocalBroker, free_port

TEMPLATE = Path(__file__).resolve().parents[2] / "ansible/roles/kafka/templates/kafka-ready.sh.j2"


def probe(port: int) -> subprocess.CompletedProcess[str]:
    script = jinja2.Template(TEMPLATE.read_text()).render(
        ansible_managed="test", kafka_ready_address="127.0.0.1", kafka_ready_port=port
    )
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=10)


@pytest.fixture
def not_kafka() -> Iterator[int]:
    """A loopback server that answers every connection with an HTTP error, as a wrong service would."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    server.close()
    thread.join(timeout=5)


def test_ready_when_the_broker_answers(kafka_broker: LocalBroker) -> None:
    result = probe(kafka_broker.port)
    assert result.returncode == 0, result.stderr


def test_ready_on_the_controller_listener(kafka_broker: LocalBroker) -> None:
    # A controller-only node is probed on its controller port.
    result = probe(kafka_broker.controller_port)
    assert result.returncode == 0, result.stderr


def test_not_ready_when_nothing_listens() -> None:
    result = probe(free_port())
    assert result.returncode != 0
    assert "Connection refused" in result.stderr


def test_not_ready_when_another_service_answers(not_kafka: int) -> None:
    assert probe(not_kafka).returncode != 0
