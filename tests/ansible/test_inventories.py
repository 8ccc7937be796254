"""The example inventories render the Kafka and pipeline configuration the roles would write.

Runs the real roles' defaults, validation and templates through ansible-playbook on the control
node (tests/ansible/render.yml); no host is contacted, so this runs in `make test` in seconds.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.common.settings import Settings

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
INVENTORY = REPO / "inventory"
PLAYBOOK = Path(__file__).resolve().parent / "render.yml"


def start_render(inventory: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(ANSIBLE_DIR / "ansible.cfg")
    env["ANSIBLE_ROLES_PATH"] = str(ANSIBLE_DIR / "roles")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        *("-i", str(inventory), str(PLAYBOOK), "-e", f"out={out}", "-e", "ansible_connection=local"),
        *("-e", f"ansible_python_interpreter={sys.executable}", *extra),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


# name -> (inventory, extra arguments). All are rendered at once: each ansible-playbook run spends
# most of its time starting up, so running them side by side keeps this module fast.
CASES: dict[str, tuple[Path, tuple[str, ...]]] = {
    "three_brokers": (INVENTORY / "kafka-3-brokers" / "hosts.yml", ()),
    "three_brokers_on_loopback": (
        INVENTORY / "kafka-3-brokers" / "hosts.yml",
        ("-e", "kafka_listener_address=127.0.0.1"),
    ),
    "localhost": (INVENTORY / "localhost.yml", ()),
    "localhost_dashboard_setting": (
        INVENTORY / "localhost.yml",
        ("-e", '{"pipeline_settings": {"dashboard_refresh_s": 5}}'),
    ),
    "localhost_mistyped_setting": (
        INVENTORY / "localhost.yml",
        ("-e", '{"pipeline_settings": {"replay_sped": 0}}'),
    ),
    "vagrant": (INVENTORY / "vagrant" / "hosts.yml", ()),
}


@dataclasses.dataclass(frozen=True)
class Rendered:
    returncode: int
    output: str
    out: Path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    base = tmp_path_factory.mktemp("render")
    running = {
        name: (start_render(inv, base / name, *extra), base / name) for name, (inv, extra) in CASES.items()
    }
    results = {}
    for name, (process, out) in running.items():
        output, _ = process.communicate(timeout=300)
        results[name] = Rendered(process.returncode, output, out)
    return results


def ok(rendered: dict[str, Rendered], name: str) -> Path:
    result = rendered[name]
    assert result.returncode == 0, result.output
    return result.out


def properties(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {key: value for key, value in pairs}


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


def test_a_setting_changes_only_the_stamps_of_services_that_read_it(rendered: dict[str, Rendered]) -> None:
    before, after = ok(rendered, "localhost"), ok(rendered, "localhost_dashboard_setting")
    changed = {
        service
        for service in ("producer", "processing", "dashboard")
        if (before / f"localhost.{service}.stamp").read_text()
        != (after / f"localhost.{service}.stamp").read_text()
    }
    assert changed == {"dashboard"}
    assert properties(after / "localhost.telemetry.env")["TELEMETRY_DASHBOARD_REFRESH_S"] == "5"


def test_every_app_setting_is_mapped_to_the_services_that_read_it() -> None:
    role_vars = yaml.safe_load((ANSIBLE_DIR / "roles" / "pipeline" / "vars" / "main.yml").read_text())
    mapped = {name for names in role_vars["pipeline_service_settings"].values() for name in names}
    assert mapped == {field.name for field in dataclasses.fields(Settings)}


def test_a_mistyped_setting_is_refused(rendered: dict[str, Rendered]) -> None:
    result = rendered["localhost_mistyped_setting"]
    assert result.returncode != 0
    assert "Unknown pipeline_settings ['replay_sped']" in result.output
