"""A changed setting restarts exactly the services that read it, and "reads" is true to the code.

The chain: the services' code -> `read_by` in app/common/settings.py (AST scan below) -> the
pipeline role's generated vars/settings.yml (equality) -> each service's settings stamp, whose
change is what restarts it (rendered by the role's own template, one setting changed at a time).
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from app.common.settings import SERVICES, Settings, read_by, service_settings_yaml
from tests.ansible.rendering import ANSIBLE_DIR, INVENTORY, REPO, Rendered, properties, render_all

FIELDS = [field.name for field in dataclasses.fields(Settings)]
ROLE_SETTINGS = ANSIBLE_DIR / "roles" / "pipeline" / "vars" / "settings.yml"
# The package each service runs from.
SERVICE_PACKAGES = {
    "producer": "app/producer",
    "processing": "app/processing",
    "dashboard": "app/dashboard",
    "reconcile": "app/reconcile",
}


@pytest.fixture(scope="module")
def stamps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    matrix = "{" + f'"stamp_matrix": {FIELDS!r}'.replace("'", '"') + "}"
    cases = {"matrix": (INVENTORY / "localhost.yml", ("-e", matrix))}
    rendered: dict[str, Rendered] = render_all(cases, tmp_path_factory.mktemp("stamps"))
    return rendered["matrix"].ok()


def test_the_role_mapping_is_the_one_generated_from_the_settings() -> None:
    assert ROLE_SETTINGS.read_text() == service_settings_yaml(), (
        "regenerate: .venv/bin/python -m app.common.settings ansible-vars > " + str(ROLE_SETTINGS)
    )


@pytest.mark.parametrize("name", FIELDS)
def test_changing_one_setting_changes_the_stamps_of_exactly_its_readers(stamps: Path, name: str) -> None:
    lines = (stamps / "localhost.stamp-matrix.jsonl").read_text().splitlines()
    matrix = {(row["setting"], row["service"]): row["stamp"] for row in map(json.loads, filter(None, lines))}
    changed = {
        service
        for service in SERVICES
        if (stamps / f"localhost.{service}.stamp").read_text() != matrix[name, service]
    }
    field = next(f for f in dataclasses.fields(Settings) if f.name == name)
    assert changed == set(field.metadata["read_by"])


def test_the_environment_file_carries_every_setting_the_role_is_given(stamps: Path) -> None:
    env = properties(stamps / "localhost.telemetry.env")
    assert env["TELEMETRY_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    assert env["TELEMETRY_CHECKPOINT_DIR"] == "/var/lib/telemetry/checkpoints"


def _modules(package: str) -> set[Path]:
    """The service's own modules and the app.common modules they import, transitively."""
    found = set((REPO / package).glob("*.py"))
    pending = list(found)
    while pending:
        tree = ast.parse(pending.pop().read_text())
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                path = REPO / (name.replace(".", "/") + ".py")
                if name.startswith("app.common.") and path.exists() and path not in found:
                    found.add(path)
                    pending.append(path)
    return found - {REPO / "app/common/settings.py"}


def _settings_read(paths: set[Path]) -> set[str]:
    """Fields read as `<...settings>.<field>` (a `settings` name or a `_settings` attribute)."""
    read = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in FIELDS:
                owner = node.value
                owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                if owner_name.endswith("settings"):
                    read.add(node.attr)
    return read


@pytest.mark.parametrize("service", SERVICES)
def test_read_by_is_what_the_code_of_each_service_reads(service: str) -> None:
    assert _settings_read(_modules(SERVICE_PACKAGES[service])) == set(read_by(service))
