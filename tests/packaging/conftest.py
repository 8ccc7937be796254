"""The app built as a wheel and installed into a scratch virtualenv, the way the pipeline role does.

The wheel is built as `pip install .` builds it from the checkout, but from a copy of the checkout
(which then gets no build/ or egg-info), so that tests/ and the rest of the tree are there to leak
in. The virtualenv reuses the test venv's installed dependencies through a .pth file (pyspark is not
downloaded again) and gets the wheel with --no-deps, so the only `app` it can import is the
installed one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# What is not part of the checkout's sources: the shared venv and caches, build and run output.
NOT_SOURCES = (".git", ".venv", ".cache", ".run", "results", "__pycache__", "*_cache", ".vagrant", "build")
SCRIPTS = ("telemetry-producer", "telemetry-processing", "telemetry-dashboard", "telemetry-reconcile")


def build_wheel(out: Path) -> Path:
    source = out / "src"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
         "--wheel-dir", str(out / "dist"), str(source)],
        check=True, timeout=300, env=os.environ | {"SOURCE_DATE_EPOCH": "315532800"},
    )  # fmt: skip
    (wheel,) = (out / "dist").glob("*.whl")
    return wheel


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def installed_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "shared-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
         "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    yield venv
