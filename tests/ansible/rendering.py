"""Render the roles' configuration for an inventory through ansible-playbook (render.yml).

Runs the real roles' defaults, validation and templates on the control node; no host is
contacted. Each run spends most of its time starting up, so a test module starts all its cases at
once and waits for them together.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
INVENTORY = REPO / "inventory"
PLAYBOOK = Path(__file__).resolve().parent / "render.yml"

# name -> (inventory, extra ansible-playbook arguments)
Cases = dict[str, tuple[Path, tuple[str, ...]]]


@dataclasses.dataclass(frozen=True)
class Rendered:
    returncode: int
    output: str
    out: Path

    def ok(self) -> Path:
        assert self.returncode == 0, self.output
        return self.out


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


def render_all(cases: Cases, base: Path) -> dict[str, Rendered]:
    running = {
        name: (start_render(inventory, base / name, *extra), base / name)
        for name, (inventory, extra) in cases.items()
    }
    results = {}
    for name, (process, out) in running.items():
        output, _ = process.communicate(timeout=900)
        results[name] = Rendered(process.returncode, output, out)
    return results


def properties(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {key: value for key, value in pairs}
