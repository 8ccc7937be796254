"""The kafka role creates exactly the app's topic table (app/common/topics.py), names included.

Renders the role's own topic script (kafka-ensure-topics.sh.j2) with its defaults and compares
every `ensure_topic` line with the table, on one node and on three, and after a topic is renamed in
the pipeline's settings: on the command line, and only in the pipeline hosts' group_vars.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from app.common.settings import Settings
from app.common.topics import TOPICS, TopicSpec, topic_specs
from tests.ansible.rendering import INVENTORY, Cases, Rendered, properties, render_all

RENAMED = {"raw_topic": "trades_v2", "dead_letter_topic": "trades_v2_rejected"}


def _split_inventory_renaming_in_pipeline_group_vars(base: Path) -> Path:
    """The three-broker inventory with the rename set for the pipeline group only."""
    copy = base / "kafka-3-brokers-renamed"
    shutil.copytree(INVENTORY / "kafka-3-brokers", copy)
    pipeline_vars = copy / "group_vars" / "pipeline.yml"
    with pipeline_vars.open("a") as out:
        out.write(yaml.safe_dump({"pipeline_settings": RENAMED}))
    return copy / "hosts.yml"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    base = tmp_path_factory.mktemp("topics")
    cases: Cases = {
        "localhost": (INVENTORY / "localhost.yml", ()),
        "localhost_renamed": (
            INVENTORY / "localhost.yml",
            ("-e", yaml.safe_dump({"pipeline_settings": RENAMED}, default_flow_style=True).strip()),
        ),
        "three_brokers": (INVENTORY / "kafka-3-brokers" / "hosts.yml", ()),
        "three_brokers_renamed": (_split_inventory_renaming_in_pipeline_group_vars(base), ()),
    }
    return render_all(cases, base)


def role_topics(script: Path) -> list[TopicSpec]:
    specs = []
    for line in script.read_text().splitlines():
        if line.startswith("ensure_topic "):
            _, name, partitions, replication, *configs = shlex.split(line)
            pairs = dict(config.split("=", 1) for config in configs)
            specs.append(TopicSpec(name, int(partitions), int(replication), pairs))
    return specs


def test_the_table_names_every_topic_setting_once() -> None:
    topic_fields = [name for name in Settings.__dataclass_fields__ if name.endswith("_topic")]
    assert sorted(topic.setting for topic in TOPICS) == sorted(topic_fields)


def test_one_node_creates_the_apps_topics(rendered: dict[str, Rendered]) -> None:
    assert role_topics(rendered["localhost"].ok() / "localhost.ensure-topics.sh") == topic_specs(Settings())


def test_three_nodes_create_the_apps_topics_replicated(rendered: dict[str, Rendered]) -> None:
    script = rendered["three_brokers"].ok() / "kafka-1.ensure-topics.sh"
    assert role_topics(script) == topic_specs(Settings(), replication_factor=3, min_insync_replicas=2)


def test_a_topic_renamed_in_the_pipeline_settings_is_created_under_that_name(
    rendered: dict[str, Rendered],
) -> None:
    out = rendered["localhost_renamed"].ok()
    assert role_topics(out / "localhost.ensure-topics.sh") == topic_specs(Settings(**RENAMED))
    assert properties(out / "localhost.telemetry.env")["TELEMETRY_RAW_TOPIC"] == "trades_v2"


def test_a_rename_set_for_the_pipeline_hosts_only_reaches_the_brokers(rendered: dict[str, Rendered]) -> None:
    out = rendered["three_brokers_renamed"].ok()
    expected = topic_specs(Settings(**RENAMED), replication_factor=3, min_insync_replicas=2)
    for node in ("kafka-1", "kafka-2", "kafka-3"):
        assert role_topics(out / f"{node}.ensure-topics.sh") == expected
    assert properties(out / "pipeline-1.telemetry.env")["TELEMETRY_DEAD_LETTER_TOPIC"] == "trades_v2_rejected"
