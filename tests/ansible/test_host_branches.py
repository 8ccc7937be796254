"""How the docker and os_tuning roles meet hosts this machine is not: Ubuntu 24.04 without universe,
a host already running Docker CE or chrony, a distribution the appliance does not support.

The roles' own task files run through ansible-playbook on the control node against faked facts
(host_branches.yml), or the real site.yml in check mode (unsupported_host.yml). Faked facts are the
one stand-in: this machine is Debian 12 without systemd, and no Ubuntu image can boot here. Only
task files that decide, or edit a file the test names, are run; nothing is installed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ROLES = REPO / "ansible" / "roles"

UBUNTU = {
    "distribution": "Ubuntu",
    "distribution_version": "24.04",
    "distribution_major_version": "24",
    "distribution_release": "noble",
    "os_family": "Debian",
}
DEBIAN = {
    "distribution": "Debian",
    "distribution_version": "12.12",
    "distribution_major_version": "12",
    "distribution_release": "bookworm",
    "os_family": "Debian",
}
# A minimal or cloud Ubuntu image without universe, in 24.04's deb822 format.
UBUNTU_SOURCES = """\
Types: deb
URIs: http://archive.ubuntu.com/ubuntu/
Suites: noble noble-updates noble-backports
Components: main restricted
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg

Types: deb
URIs: http://security.ubuntu.com/ubuntu/
Suites: noble-security
Components: main restricted
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg
"""


def package(name: str, version: str) -> list[dict[str, str]]:
    return [{"name": name, "version": version, "source": "apt", "arch": "amd64"}]


DOCKER_CE = package("docker-ce", "5:28.5.1-1~ubuntu.24.04~noble")
COMPOSE_PLUGIN = package("docker-compose-plugin", "2.40.0-1~ubuntu.24.04~noble")


def service(name: str, state: str) -> dict[str, str]:
    return {"name": name, "state": state, "status": "enabled", "source": "systemd"}


@dataclasses.dataclass(frozen=True)
class Case:
    role: str
    tasks: str
    facts: dict[str, Any]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    sources: str | None = None  # content of a scratch ubuntu.sources the role may edit


CASES: dict[str, Case] = {
    "universe_ubuntu": Case("docker", "universe", UBUNTU, sources=UBUNTU_SOURCES),
    "universe_debian": Case("docker", "universe", DEBIAN, sources=UBUNTU_SOURCES),
    "docker_ce": Case(
        "docker",
        "detect",
        {**UBUNTU, "packages": {"docker-ce": DOCKER_CE, "docker-compose-plugin": COMPOSE_PLUGIN}},
    ),
    "docker_ce_without_compose": Case("docker", "detect", {**UBUNTU, "packages": {"docker-ce": DOCKER_CE}}),
    "docker_io_ubuntu": Case("docker", "detect", {**UBUNTU, "packages": {}}),
    "docker_io_debian": Case("docker", "detect", {**DEBIAN, "packages": {}}),
    "docker_unknown_distribution": Case("docker", "validate", {**UBUNTU, "distribution": "Fedora"}),
    "chrony_active": Case(
        "os_tuning",
        "time_daemon",
        {**UBUNTU, "services": {"chrony.service": service("chrony.service", "running")}},
    ),
    "chrony_stopped": Case(
        "os_tuning",
        "time_daemon",
        {
            **UBUNTU,
            "services": {
                "chrony.service": service("chrony.service", "stopped"),
                "systemd-timesyncd.service": service("systemd-timesyncd.service", "running"),
            },
        },
    ),
    "platform_ubuntu": Case("os_tuning", "platform", UBUNTU),
    "platform_debian": Case("os_tuning", "platform", DEBIAN),
}
# The whole site.yml, check mode, on hosts it must refuse.
UNSUPPORTED: dict[str, dict[str, str]] = {
    "rocky": {
        "distribution": "Rocky",
        "distribution_version": "9.4",
        "distribution_major_version": "9",
        "distribution_release": "Blue Onyx",
        "os_family": "RedHat",
    },
    "ubuntu_22_04": {
        **UBUNTU,
        "distribution_version": "22.04",
        "distribution_major_version": "22",
        "distribution_release": "jammy",
    },
}


@dataclasses.dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    decisions: dict[str, Any]
    sources: Path


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible" / "ansible.cfg")
    env["ANSIBLE_ROLES_PATH"] = str(ROLES)
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def playbook(path: Path, *args: str) -> subprocess.Popen[str]:
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        *("-i", str(REPO / "inventory" / "localhost.yml"), str(path)),
        *("-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}", *args),
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ansible_env()
    )


def start_case(case: Case, work: Path) -> subprocess.Popen[str]:
    work.mkdir(parents=True, exist_ok=True)
    sources = work / "ubuntu.sources"
    if case.sources is not None:
        sources.write_text(case.sources)
    variables = {
        "fake_facts": case.facts,
        "role_under_test": case.role,
        "tasks_under_test": case.tasks,
        "out": str(work / "decisions.json"),
        "docker_ubuntu_sources": str(sources),
        **case.extra,
    }
    (work / "vars.json").write_text(json.dumps(variables))
    return playbook(HERE / "host_branches.yml", "-e", f"@{work / 'vars.json'}")


def finish(process: subprocess.Popen[str], work: Path) -> Run:
    output, _ = process.communicate(timeout=300)
    out = work / "decisions.json"
    decisions = json.loads(out.read_text()) if out.exists() else {}
    return Run(process.returncode, output, decisions, work / "ubuntu.sources")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every case at once: each ansible-playbook run spends most of its time starting up."""
    base = tmp_path_factory.mktemp("branches")
    started = {name: (start_case(case, base / name), base / name) for name, case in CASES.items()}
    for name, facts in UNSUPPORTED.items():
        (base / name).mkdir()
        (base / name / "vars.json").write_text(json.dumps({"fake_facts": facts}))
        started[name] = (
            playbook(HERE / "unsupported_host.yml", "--check", "-e", f"@{base / name / 'vars.json'}"),
            base / name,
        )
    return {name: finish(process, work) for name, (process, work) in started.items()}


def ok(runs: dict[str, Run], name: str) -> Run:
    run = runs[name]
    assert run.returncode == 0, run.output
    return run


def test_ubuntu_gets_universe_in_every_sources_stanza(runs: dict[str, Run]) -> None:
    run = ok(runs, "universe_ubuntu")
    components = [line for line in run.sources.read_text().splitlines() if line.startswith("Components:")]
    assert components == ["Components: main restricted universe"] * 2
    # Nothing else in the administrator's sources moved.
    assert run.sources.read_text() == UBUNTU_SOURCES.replace("main restricted", "main restricted universe")

    again = finish(
        start_case(dataclasses.replace(CASES["universe_ubuntu"], sources=None), run.sources.parent),
        run.sources.parent,
    )
    assert again.returncode == 0, again.output
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0 ", again.output), again.output


def test_debian_sources_are_left_alone(runs: dict[str, Run]) -> None:
    run = ok(runs, "universe_debian")
    assert run.sources.read_text() == UBUNTU_SOURCES


def test_docker_ce_with_its_compose_plugin_is_used_as_it_is(runs: dict[str, Run]) -> None:
    run = ok(runs, "docker_ce")
    assert run.decisions["docker_ce_present"] is True
    assert run.decisions["docker_compose_command"] == "docker compose"
    assert "used as they are" in run.output
    # ...and the install step, the only one that adds packages or sources, is skipped for it.
    main = yaml.safe_load((ROLES / "docker" / "tasks" / "main.yml").read_text())
    [install] = [task for task in main if task.get("ansible.builtin.include_tasks") == "install.yml"]
    assert install["when"] == "not docker_ce_present"


def test_docker_ce_without_its_compose_plugin_is_refused(runs: dict[str, Run]) -> None:
    run = runs["docker_ce_without_compose"]
    assert run.returncode != 0
    assert "is installed without docker-compose-plugin" in run.output


@pytest.mark.parametrize(
    ("name", "command"), [("docker_io_ubuntu", "docker compose"), ("docker_io_debian", "docker-compose")]
)
def test_hosts_without_docker_get_the_distributions_packages(
    runs: dict[str, Run], name: str, command: str
) -> None:
    run = ok(runs, name)
    assert run.decisions["docker_ce_present"] is False
    assert run.decisions["docker_compose_command"] == command


def test_docker_role_names_the_distributions_it_knows(runs: dict[str, Run]) -> None:
    run = runs["docker_unknown_distribution"]
    assert run.returncode != 0
    assert "from the packages of Ubuntu and Debian; this host runs Fedora" in run.output


def test_active_chrony_is_kept(runs: dict[str, Run]) -> None:
    assert ok(runs, "chrony_active").decisions["os_tuning_chrony_active"] is True
    assert ok(runs, "chrony_stopped").decisions["os_tuning_chrony_active"] is False
    # timesyncd (whose package replaces chrony's) is set up only when chrony is not active.
    main = yaml.safe_load((ROLES / "os_tuning" / "tasks" / "main.yml").read_text())
    [timesyncd] = [task for task in main if task.get("ansible.builtin.import_tasks") == "timesyncd.yml"]
    assert timesyncd["when"] == "os_tuning_time_sync and not os_tuning_chrony_active"


@pytest.mark.parametrize("name", ["platform_ubuntu", "platform_debian"])
def test_supported_platforms_pass(runs: dict[str, Run], name: str) -> None:
    ok(runs, name)


@pytest.mark.parametrize(("name", "seen"), [("rocky", "Rocky 9.4"), ("ubuntu_22_04", "Ubuntu 22.04")])
def test_unsupported_host_is_refused_before_any_change(runs: dict[str, Run], name: str, seen: str) -> None:
    run = runs[name]
    assert run.returncode != 0
    message = " ".join(run.output.split())
    assert f"This host runs {seen}; the appliance supports Ubuntu 24.04, Debian 12 only." in message
    tasks = re.findall(r"^TASK \[(.+?)\]", run.output, flags=re.MULTILINE)
    assert tasks == [
        "Fake the facts",
        "Gathering Facts",
        "Check the platform",
        "os_tuning : Refuse a platform the appliance is not made for",
    ]
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0 .*failed=1", run.output), run.output
