"""Jars the control node no longer has leave the host's jars directory (pipeline_jars_source controller).

Every jar there goes on the job's classpath (app/processing/session.py), so an earlier connector's
jar left beside the new one would put two versions of a class on it. The role's task file runs on
this machine through host_branches.yml; the Maven source's counterpart is checked by Molecule
(prepare.yml leaves an earlier pom's jar, verify.yml checks it is gone).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.ansible.test_host_branches import HERE, UBUNTU, playbook

CONTROLLER_JARS = ["kafka-clients-4.1.0.jar", "spark-sql-kafka-0-10_2.13-4.2.0.jar", "telemetry-ledger.jar"]


def test_a_jar_the_control_node_no_longer_has_is_removed(tmp_path: Path) -> None:
    controller, host = tmp_path / "controller", tmp_path / "host"
    controller.mkdir()
    host.mkdir()
    for name in CONTROLLER_JARS:
        (controller / name).write_bytes(name.encode())
    (host / "kafka-clients-3.9.2.jar").write_bytes(b"an earlier connector's")
    (host / "notes.txt").write_text("not a jar: not on the classpath, left alone")
    variables = {
        "fake_facts": UBUNTU,
        "role_under_test": "pipeline",
        "tasks_under_test": "jars_controller",
        "out": str(tmp_path / "decisions.json"),
        "pipeline_jars_controller_dir": str(controller),
        "pipeline_jars_dir": str(host),
        # No service here to restart: the handler's condition keeps it from systemd.
        "pipeline_host_services": [],
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    process = playbook(HERE / "host_branches.yml", "-e", f"@{tmp_path / 'vars.json'}")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert sorted(path.name for path in host.iterdir()) == sorted([*CONTROLLER_JARS, "notes.txt"])
    assert (host / "kafka-clients-4.1.0.jar").read_bytes() == b"kafka-clients-4.1.0.jar"
