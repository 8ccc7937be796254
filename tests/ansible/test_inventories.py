"""The example inventories render the Kafka and pipeline configuration the roles would write.

Runs the real roles' defaults, validation and templates through ansible-playbook on the control
node (tests/ansible/render.yml); no host is contacted, so this runs in `make test` in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ansible.rendering import INVENTORY, Cases, Rendered, properties, render_all

# All are rendered at once: each ansible-playbook run spends most of its time starting up, so
# running them side by side keeps this module fast.
CASES: Cases = {
    "three_brokers": (INVENTORY / "kafka-3-brokers" / "hosts.yml", ()),
    "three_brokers_on_loopback": (
        INVENTORY / "kafka-3-brokers" / "hosts.yml",
        ("-e", "kafka_listener_address=127.0.0.1"),
    ),
    "localhost": (INVENTORY / "localhost.yml", ()),
    "localhost_mistyped_setting": (
        INVENTORY / "localhost.yml",
        ("-e", '{"pipeline_settings": {"replay_sped": 0}}'),
    ),
    "vagrant": (INVENTORY / "vagrant" / "hosts.yml", ()),
    "two_brokers": (Path(__file__).resolve().parent / "inventories" / "two-brokers.yml", ()),
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    return render_all(CASES, tmp_path_factory.mktemp("render"))


def ok(rendered: dict[str, Rendered], name: str) -> Path:
    return rendered[name].ok()


def test_three_brokers_share_one_quorum_computed_from_the_group(rendered: dict[str, Rendered]) -> None:
    out = ok(rendered, "three_brokers")
    nodes = {index: properties(out / f"kafka-{index}.server.properties") for index in (1, 2, 3)}
    voters = {cfg["controller.quorum.voters"] for cfg in nodes.values()}
    assert voters == {"1@192.0.2.11:9093,2@192.0.2.12:9093,3@192.0.2.13:9093"}
    for index, cfg in nodes.items():
        address = f"192.0.2.1{index}"
        assert cfg["node.id"] == str(index)
        assert cfg["listeners"] == f"PLAINTEXT://{address}:9092,CONTROLLER://{address}:9093"
        assert cfg["advertised.listeners"] == f"PLAINTEXT://{address}:9092"
        assert cfg["default.replication.factor"] == "3"
        assert cfg["min.insync.replicas"] == "2"
        assert cfg["offsets.topic.replication.factor"] == "3"
        assert cfg["auto.create.topics.enable"] == "false"


def test_pipeline_host_reaches_every_broker(rendered: dict[str, Rendered]) -> None:
    settings = properties(ok(rendered, "three_brokers") / "pipeline-1.telemetry.env")
    assert settings["TELEMETRY_KAFKA_BOOTSTRAP_SERVERS"] == "192.0.2.11:9092,192.0.2.12:9092,192.0.2.13:9092"
    assert settings["TELEMETRY_CHECKPOINT_DIR"] == "/var/lib/telemetry/checkpoints"


def test_multi_node_cluster_on_loopback_is_refused(rendered: dict[str, Rendered]) -> None:
    result = rendered["three_brokers_on_loopback"]
    assert result.returncode != 0
    assert "cannot listen on loopback only" in result.output


def test_an_even_number_of_controllers_is_refused(rendered: dict[str, Rendered]) -> None:
    result = rendered["two_brokers"]
    assert result.returncode != 0
    assert "needs an odd number of controllers (1, 3 or 5), but 2 hosts" in result.output


def test_single_host_default_is_one_loopback_node(rendered: dict[str, Rendered]) -> None:
    cfg = properties(ok(rendered, "localhost") / "localhost.server.properties")
    assert cfg["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert cfg["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert cfg["default.replication.factor"] == "1"
    assert cfg["min.insync.replicas"] == "1"


def test_vagrant_inventory_replays_without_internet(rendered: dict[str, Rendered]) -> None:
    settings = properties(ok(rendered, "vagrant") / "default.telemetry.env")
    assert settings["TELEMETRY_SOURCE"] == "replay"
    assert settings["TELEMETRY_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"


def test_a_mistyped_setting_is_refused(rendered: dict[str, Rendered]) -> None:
    result = rendered["localhost_mistyped_setting"]
    assert result.returncode != 0
    assert "Unknown pipeline_settings ['replay_sped']" in result.output
