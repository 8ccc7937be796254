"""The pipeline units the role renders stay within its exposure limit, each with its own IP filter.

Renders the units through the real role (tests/ansible/render.yml) for the example inventories and
scores each with `systemd-analyze security --offline=true`, the score Molecule's verify reads on a
running host. Which peers each unit may reach is derived from the bootstrap servers, the source
and the dashboard's address; these cases pin that derivation.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ansible.rendering import ANSIBLE_DIR, INVENTORY, Cases, Rendered, render_all

ROLE_VARS = ANSIBLE_DIR / "roles" / "pipeline" / "vars" / "main.yml"
SERVICES = ("producer", "processing", "dashboard")
CASES: Cases = {
    "localhost": (INVENTORY / "localhost.yml", ()),
    "localhost_replay": (INVENTORY / "localhost.yml", ("-e", "pipeline_source=replay")),
    "single_host": (INVENTORY / "single-host" / "hosts.yml", ()),
    "three_brokers": (INVENTORY / "kafka-3-brokers" / "hosts.yml", ()),
    "broker_by_name": (
        INVENTORY / "localhost.yml",
        ("-e", "pipeline_source=replay", "-e", "pipeline_kafka_bootstrap_servers=kafka.example:9092"),
    ),
}
# (case, host) whose units are scored.
UNIT_HOSTS = {
    "localhost": "localhost",
    "localhost_replay": "localhost",
    "single_host": "appliance-1",
    "three_brokers": "pipeline-1",
    "broker_by_name": "localhost",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    return render_all(CASES, tmp_path_factory.mktemp("units"))


def unit(rendered: dict[str, Rendered], case: str, service: str) -> Path:
    return rendered[case].ok() / f"{UNIT_HOSTS[case]}.telemetry-{service}.service"


def directives(path: Path) -> dict[str, str]:
    """The unit's `Key=value` lines (the last one of a repeated key)."""
    lines = path.read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith(("#", "[")))
    return {key: value for key, value in pairs}


def exposure(path: Path) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def exposure_max() -> float:
    return float(yaml.safe_load(ROLE_VARS.read_text())["pipeline_exposure_max"])


@pytest.mark.parametrize("case", sorted(UNIT_HOSTS))
@pytest.mark.parametrize("service", SERVICES)
def test_every_unit_scores_within_the_limit(rendered: dict[str, Rendered], case: str, service: str) -> None:
    assert exposure(unit(rendered, case, service)) <= exposure_max()


def test_only_the_jvm_may_write_executable_memory(rendered: dict[str, Rendered]) -> None:
    found = {
        service: directives(unit(rendered, "localhost", service)).get("MemoryDenyWriteExecute")
        for service in SERVICES
    }
    assert found == {"producer": "yes", "processing": None, "dashboard": "yes"}


def test_a_stop_signals_only_the_service_itself(rendered: dict[str, Rendered]) -> None:
    """The job's JVM must not get the SIGTERM its Python driver gets (tests/support/pipeline.py's
    `Process.stop` stops the services the same way)."""
    assert {directives(unit(rendered, "localhost", s)).get("KillMode") for s in SERVICES} == {"mixed"}


def ip_filters(rendered: dict[str, Rendered], case: str) -> dict[str, tuple[str | None, str | None]]:
    filters = {}
    for service in SERVICES:
        settings = directives(unit(rendered, case, service))
        filters[service] = (settings.get("IPAddressDeny"), settings.get("IPAddressAllow"))
    return filters


def test_replay_keeps_every_service_on_loopback_and_the_broker(rendered: dict[str, Rendered]) -> None:
    allowed = ("any", "localhost")
    assert ip_filters(rendered, "localhost_replay") == dict.fromkeys(SERVICES, allowed)


def test_the_live_producer_is_not_address_filtered(rendered: dict[str, Rendered]) -> None:
    allowed = ("any", "localhost")
    assert ip_filters(rendered, "localhost") == {
        "producer": (None, None),
        "processing": allowed,
        "dashboard": allowed,
    }


def test_a_published_dashboard_accepts_any_client(rendered: dict[str, Rendered]) -> None:
    assert ip_filters(rendered, "single_host")["dashboard"] == (None, None)


def test_the_job_reaches_every_broker(rendered: dict[str, Rendered]) -> None:
    brokers = "localhost 192.0.2.11 192.0.2.12 192.0.2.13"
    assert ip_filters(rendered, "three_brokers")["processing"] == ("any", brokers)


def test_a_broker_given_by_name_lifts_the_filter(rendered: dict[str, Rendered]) -> None:
    assert ip_filters(rendered, "broker_by_name") == dict.fromkeys(SERVICES, (None, None))
