"""From one host to a cluster: the layouts the kafka and pipeline roles accept, and those they refuse
before anything changes.

Renders the real roles' defaults, validation and templates through ansible-playbook on the control
node (render.yml), like test_inventories.py; no host is contacted. A "running" node is one whose
server.properties already exists: the test writes it, as the role would have on an earlier run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.rendering import INVENTORY, REPO, Cases, Rendered, properties, render_all

HERE = Path(__file__).resolve().parent / "inventories"
THREE = INVENTORY / "kafka-3-brokers" / "hosts.yml"
KAFKA_ROLE = REPO / "ansible" / "roles" / "kafka"
THREE_VOTERS = "1@192.0.2.11:9093,2@192.0.2.12:9093,3@192.0.2.13:9093"


def plus(extra: str, *args: str) -> tuple[str, ...]:
    return ("-i", str(HERE / extra), *args)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    base = tmp_path_factory.mktemp("layouts")
    # kafka-1..3 of inventory/kafka-3-brokers, formatted and running; and the same cluster as an
    # earlier inventory numbered it, with a host before kafka-1 that has since gone.
    for name, first_id in (("running", 1), ("numbered_after_a_removed_host", 2)):
        for node in (1, 2, 3):
            running = base / name / f"kafka-{node}"
            running.mkdir(parents=True)
            (running / "server.properties").write_text(
                f"# Ansible managed\nnode.id={node + first_id - 1}\ncontroller.quorum.voters={THREE_VOTERS}\n"
            )

    def on_running(name: str = "running") -> tuple[str, ...]:
        return ("-e", f"kafka_config_dir={base / name}/{{{{ inventory_hostname }}}}")

    cases: Cases = {
        "split_roles": (HERE / "split-roles.yml", ()),
        "no_controller": (HERE / "no-controller.yml", ()),
        "add_broker": (THREE, plus("add-broker.yml", *on_running())),
        "add_controllers": (THREE, plus("add-controllers.yml", *on_running())),
        "unchanged": (THREE, on_running()),
        "renumbered": (THREE, on_running("numbered_after_a_removed_host")),
        "spark_host": (THREE, ()),
        "two_pipelines": (THREE, plus("two-pipelines.yml")),
        "two_pipelines_chosen": (
            THREE,
            plus("two-pipelines.yml", "-e", '{"pipeline_multiple_producers": true}'),
        ),
        "two_sparks": (THREE, plus("two-sparks.yml")),
        "single_host": (INVENTORY / "localhost.yml", ()),
        "memory_below_heap": (INVENTORY / "localhost.yml", ("-e", "kafka_memory_limit=1200m")),
    }
    return render_all(cases, base / "out")


def layout(out: Path, host: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((out / f"{host}.layout.json").read_text())
    return result


def refused(rendered: dict[str, Rendered], name: str, message: str) -> None:
    result = rendered[name]
    assert result.returncode != 0, result.output
    assert message in " ".join(result.output.split()), result.output


def test_controllers_and_brokers_can_run_on_separate_hosts(rendered: dict[str, Rendered]) -> None:
    out = rendered["split_roles"].ok()
    controllers = {
        host: properties(out / f"{host}.server.properties") for host in ("controller-1", "controller-3")
    }
    brokers = {host: properties(out / f"{host}.server.properties") for host in ("broker-1", "broker-2")}
    for host, cfg in {**controllers, **brokers}.items():
        assert cfg["controller.quorum.voters"] == THREE_VOTERS, host
    assert controllers["controller-1"]["process.roles"] == "controller"
    assert controllers["controller-1"]["listeners"] == "CONTROLLER://192.0.2.11:9093"
    assert "advertised.listeners" not in controllers["controller-1"]
    assert brokers["broker-2"]["process.roles"] == "broker"
    assert brokers["broker-2"]["node.id"] == "5"
    assert brokers["broker-2"]["listeners"] == "PLAINTEXT://192.0.2.15:9092"
    assert brokers["broker-2"]["advertised.listeners"] == "PLAINTEXT://192.0.2.15:9092"
    # The topics are created through the first broker; a controller-only node is waited for on its
    # controller port, the only one it opens.
    assert layout(out, "controller-1") == {
        "controllers": ["controller-1", "controller-2", "controller-3"],
        "brokers": ["broker-1", "broker-2"],
        "local_port": 9093,
    }
    assert layout(out, "broker-1")["local_port"] == 9092


def test_rolling_restart_gate_asks_what_each_node_holds(rendered: dict[str, Rendered]) -> None:
    out = rendered["split_roles"].ok()
    controller = (out / "controller-2.kafka-rolling-restart.sh").read_text()
    broker = (out / "broker-1.kafka-rolling-restart.sh").read_text()
    assert "node_id=2\n" in controller
    assert 'endpoint=(--bootstrap-controller "192.0.2.12:9093")' in controller
    assert "--under-replicated-partitions" not in controller
    assert "node_id=4\n" in broker
    assert 'endpoint=(--bootstrap-server "192.0.2.14:9092")' in broker
    assert "MetadataQuorumCommand" in broker and "--under-replicated-partitions" in broker


def test_restart_handler_restarts_one_running_node_at_a_time() -> None:
    [handler] = yaml.safe_load((KAFKA_ROLE / "handlers" / "main.yml").read_text())
    assert handler["name"] == "Restart kafka"
    assert handler["throttle"] == 1
    assert handler["ansible.builtin.command"]["cmd"] == "{{ kafka_config_dir }}/rolling-restart.sh"
    # A node that was not running is started with the others, together, by the task after the
    # flush: a new quorum forms only with a majority of its voters up.
    assert handler["when"] == "kafka_was_running"
    service = yaml.safe_load((KAFKA_ROLE / "tasks" / "service.yml").read_text())
    names = [task["name"] for task in service]
    assert names.index("Remember whether the node was running") < names.index("Apply pending Kafka restarts")
    assert names.index("Apply pending Kafka restarts") < names.index("Enable and start kafka.service")


def test_a_cluster_without_a_controller_is_refused(rendered: dict[str, Rendered]) -> None:
    refused(rendered, "no_controller", "No host of group kafka has the controller role")


def test_a_broker_joins_a_running_cluster_without_a_voter_change(rendered: dict[str, Rendered]) -> None:
    out = rendered["add_broker"].ok()
    for host in ("kafka-1", "kafka-2", "kafka-3", "kafka-4"):
        assert properties(out / f"{host}.server.properties")["controller.quorum.voters"] == THREE_VOTERS
    new = properties(out / "kafka-4.server.properties")
    assert new["node.id"] == "4"
    assert new["process.roles"] == "broker"
    assert new["listeners"] == "PLAINTEXT://192.0.2.14:9092"


def test_adding_controllers_to_a_running_quorum_is_refused(rendered: dict[str, Rendered]) -> None:
    refused(
        rendered,
        "add_controllers",
        f"kafka-1 already runs as node 1 with controller.quorum.voters {THREE_VOTERS}; this inventory "
        f"makes it node 1 with {THREE_VOTERS},4@192.0.2.14:9093,5@192.0.2.15:9093. "
        "The role does not change a formatted quorum",
    )


def test_a_running_cluster_rendered_again_passes(rendered: dict[str, Rendered]) -> None:
    out = rendered["unchanged"].ok()
    assert properties(out / "kafka-3.server.properties")["node.id"] == "3"


def test_renumbering_a_running_node_is_refused(rendered: dict[str, Rendered]) -> None:
    refused(rendered, "renumbered", "kafka-1 already runs as node 2 with")


def test_spark_host_runs_the_job_and_pipeline_host_the_rest(rendered: dict[str, Rendered]) -> None:
    out = rendered["spark_host"].ok()
    assert (out / "pipeline-1.services").read_text() == "producer,dashboard,reconcile\n"
    assert (out / "spark-1.services").read_text() == "processing\n"
    # Both reach the same brokers with the same settings (group_vars/telemetry.yml).
    assert properties(out / "spark-1.telemetry.env") == properties(out / "pipeline-1.telemetry.env")


def test_single_host_runs_every_service(rendered: dict[str, Rendered]) -> None:
    out = rendered["single_host"].ok()
    assert (out / "localhost.services").read_text() == "producer,processing,dashboard,reconcile\n"


def test_a_second_producer_is_refused_unless_chosen(rendered: dict[str, Rendered]) -> None:
    refused(
        rendered,
        "two_pipelines",
        "Group pipeline has 2 hosts (pipeline-1, pipeline-2), each of which would run a producer",
    )
    out = rendered["two_pipelines_chosen"].ok()
    assert (out / "pipeline-2.services").read_text() == "producer,dashboard,reconcile\n"


def test_a_second_streaming_job_is_refused(rendered: dict[str, Rendered]) -> None:
    refused(rendered, "two_sparks", "Group spark has 2 hosts (spark-1, spark-2), each of which would run")


def test_kafka_container_is_hardened(rendered: dict[str, Rendered]) -> None:
    single = yaml.safe_load((rendered["single_host"].ok() / "localhost.compose.yml").read_text())["services"]
    kafka = single["kafka"]
    assert kafka["cap_drop"] == ["ALL"]
    assert kafka["security_opt"] == ["no-new-privileges:true"]
    assert kafka["read_only"] is True
    assert kafka["tmpfs"] == ["/tmp"]
    assert kafka["mem_limit"] == "2g"
    cluster = yaml.safe_load((rendered["spark_host"].ok() / "kafka-1.compose.yml").read_text())["services"]
    assert cluster["kafka"]["mem_limit"] == "3g"


def test_memory_limit_below_heap_is_refused(rendered: dict[str, Rendered]) -> None:
    refused(rendered, "memory_below_heap", "kafka_memory_limit (1200m) must be at least the broker heap (1g")
