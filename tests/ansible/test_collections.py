"""A control node with only ansible-core plus ansible/requirements.yml can run site.yml; without the
collections it cannot.

Galaxy is not reachable here (only PyPI is), so the collections come from the copies bundled in the
pinned `ansible` package of the shared venv, into a private collections path, and ansible-core comes
from PyPI through pip into a scratch venv. Both are cached under .cache/ansible-core-only/ (the
first run takes a minute, later ones seconds).
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
REQUIREMENTS = ANSIBLE_DIR / "requirements.yml"
# The ansible-core the pinned `ansible` package runs on here.
CORE_VERSION = importlib.metadata.version("ansible-core")


def required() -> dict[str, str]:
    spec = yaml.safe_load(REQUIREMENTS.read_text())
    return {c["name"]: str(c["version"]) for c in spec["collections"]}


def bundled_collection(name: str) -> Path:
    """Where the full `ansible` package keeps its copy of a collection."""
    dist = importlib.metadata.distribution("ansible")
    namespace, collection = name.split(".")
    return Path(str(dist.locate_file(Path("ansible_collections") / namespace / collection)))


@pytest.fixture(scope="module")
def core_only() -> Path:
    """A venv with ansible-core alone, and beside it a collections path holding requirements.yml's."""
    cache = REPO / ".cache" / "ansible-core-only" / CORE_VERSION
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Built in place (a venv cannot move) under a lock: other test runs may share the cache.
    with open(cache.with_name(f"{CORE_VERSION}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cache / ".complete").exists():
            shutil.rmtree(cache, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(cache / "venv")], check=True, timeout=120)
            pip = str(cache / "venv" / "bin" / "pip")
            subprocess.run(
                [pip, "install", "--quiet", f"ansible-core=={CORE_VERSION}"], check=True, timeout=600
            )
            for name in required():
                namespace, collection = name.split(".")
                dest = cache / "collections" / "ansible_collections" / namespace / collection
                shutil.copytree(bundled_collection(name), dest)
            (cache / "collections" / "none").mkdir()
            (cache / ".complete").touch()
    return cache


def core_run(core_only: Path, collections: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
        ANSIBLE_NOCOLOR="1",
        PATH=f"{core_only / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    return subprocess.run(
        [str(core_only / "venv" / "bin" / command[0]), *command[1:]],
        cwd=ANSIBLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_requirements_pin_the_versions_bundled_in_the_pinned_ansible_package() -> None:
    for name, version in required().items():
        manifest = json.loads((bundled_collection(name) / "MANIFEST.json").read_text())
        assert manifest["collection_info"]["version"] == version, name


def test_every_collection_the_roles_use_is_required() -> None:
    used = set()
    task_files = [*ANSIBLE_DIR.glob("roles/*/tasks/*.yml"), *ANSIBLE_DIR.glob("roles/*/handlers/*.yml")]
    for tasks in [ANSIBLE_DIR / "site.yml", *task_files]:
        for match in re.finditer(
            r"^\s*-?\s*([a-z_]+\.[a-z_]+)\.[a-z_0-9]+:", tasks.read_text(), re.MULTILINE
        ):
            used.add(match.group(1))
    assert used - {"ansible.builtin"} <= set(required())
    assert {"ansible.posix", "community.general"} <= used


def test_the_core_only_venv_has_exactly_the_required_collections(core_only: Path) -> None:
    listed = core_run(
        core_only, core_only / "collections", "ansible-galaxy", "collection", "list", "--format", "json"
    )
    assert listed.returncode == 0, listed.stderr
    found = {
        name: info["version"]
        for path, collections in json.loads(listed.stdout).items()
        if path.startswith(str(core_only / "collections"))
        for name, info in collections.items()
    }
    assert found == required()
    # The README's install command finds them all present (--offline: Galaxy is not reachable here).
    install = core_run(
        core_only,
        core_only / "collections",
        *("ansible-galaxy", "collection", "install", "--offline", "-r", str(REQUIREMENTS)),
        *("-p", str(core_only / "collections")),
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert "All requested collections are already installed" in install.stdout
    version = core_run(core_only, core_only / "collections", "ansible-playbook", "--version")
    assert f"[core {CORE_VERSION}]" in version.stdout


def test_site_yml_passes_syntax_check_with_ansible_core_and_the_requirements(core_only: Path) -> None:
    proc = core_run(core_only, core_only / "collections", "ansible-playbook", "--syntax-check", "site.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_site_yml_fails_syntax_check_with_ansible_core_alone(core_only: Path) -> None:
    proc = core_run(
        core_only, core_only / "collections" / "none", "ansible-playbook", "--syntax-check", "site.yml"
    )
    assert proc.returncode != 0
    assert "couldn't resolve module/action" in proc.stdout + proc.stderr
