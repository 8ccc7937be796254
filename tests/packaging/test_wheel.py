"""The wheel the pipeline role installs: what it holds, and the pipeline run from its console scripts.

The run uses the real broker of tests/conftest.py, the replay source in real time (its default file
is the sample CSV, installed as package data), the real Spark job with the Kafka
connector and the dashboard's Streamlit server, all started from the scratch virtualenv's bin/ and
from a folder outside the checkout, so nothing of the checkout can stand in for the installed app.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

from app.common.schema import WindowStats
from app.localkafka.broker import free_port
from tests.packaging.conftest import REPO_ROOT, SCRIPTS
from tests.support.kafka import read_all
from tests.support.pipeline import Process, answers_200, pipeline_env, wait_for

PACKAGE_DATA = (
    "app/producer/sample/BTCUSDT-trades-sample.csv",
    "app/processing/log4j2.properties",
    "app/dashboard/.streamlit/config.toml",
    "app/dashboard/streamlit_app.py",
)


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def wheel_text(wheel: Path, suffix: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(suffix)]
        return archive.read(name).decode()


def test_wheel_holds_the_package_data_and_no_tests(wheel: Path) -> None:
    names = wheel_names(wheel)
    assert [n for n in PACKAGE_DATA if n not in names] == []
    assert [n for n in names if n.startswith("tests/") or "/tests/" in n] == []
    name, version = wheel.name.split("-")[:2]
    assert {n.split("/")[0] for n in names} == {"app", f"{name}-{version}.dist-info"}


def test_wheel_requires_exactly_the_pinned_runtime_set(wheel: Path) -> None:
    pins = [
        line.strip()
        for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    metadata = wheel_text(wheel, ".dist-info/METADATA").splitlines()
    requires = [line.removeprefix("Requires-Dist: ") for line in metadata if line.startswith("Requires-Dist")]
    assert requires == pins


def test_wheel_declares_the_three_console_scripts(wheel: Path) -> None:
    entry_points = wheel_text(wheel, ".dist-info/entry_points.txt")
    for script in SCRIPTS:
        assert f"{script} = app." in entry_points


def test_each_console_script_answers_help(installed_venv: Path, tmp_path: Path) -> None:
    for script in SCRIPTS:
        result = subprocess.run(
            [str(installed_venv / "bin" / script), "--help"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, f"{script}: {result.stderr[-2000:]}"
        assert "usage:" in result.stdout, f"{script}: {result.stdout[-2000:]}"


def test_installed_app_is_imported_from_the_virtualenv(installed_venv: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(installed_venv / "bin" / "python"), "-c", "import app; print(app.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert Path(result.stdout.strip()).is_relative_to(installed_venv)


def test_pipeline_runs_from_the_console_scripts(installed_venv: Path, bootstrap: str, tmp_path: Path) -> None:
    env = pipeline_env(bootstrap, tmp_path / "checkpoints", ["BTCUSDT"])
    env |= {
        "TELEMETRY_SOURCE": "replay",
        # The default is relative to the checkout the settings module lives in, not to a venv.
        "TELEMETRY_SPARK_JARS_DIR": str(REPO_ROOT / ".cache" / "jars" / "spark"),
    }
    aggregates = env["TELEMETRY_AGGREGATES_TOPIC"]
    port = free_port()
    bin_dir = installed_venv / "bin"
    work = tmp_path / "work"
    work.mkdir()
    processes: list[Process] = []
    try:
        for module, script, args in [
            ("app.processing", "telemetry-processing", ()),
            ("app.producer", "telemetry-producer", ()),
            ("app.dashboard", "telemetry-dashboard", ("--address", "127.0.0.1", "--port", str(port))),
        ]:
            log = tmp_path / f"{script}.log"
            processes.append(Process(module, env, log, *args, program=bin_dir / script, cwd=work))
        health = f"http://127.0.0.1:{port}/_stcore/health"
        wait_for(lambda: answers_200(health), 90, "the dashboard's health check", processes)
        wait_for(lambda: read_all(bootstrap, aggregates), 300, "windows on the aggregates topic", processes)
        windows = [WindowStats.from_json(r.value) for r in read_all(bootstrap, aggregates)]
        assert {w.symbol for w in windows} == {"BTCUSDT"}
        assert all(w.low <= w.vwap <= w.high for w in windows)
        # Streamlit says this unless the installed .streamlit/config.toml beside the script applies.
        assert "Collecting usage statistics" not in processes[2].log_text()
    finally:
        for process in processes:
            process.stop()
