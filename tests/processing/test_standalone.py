"""The job on a real Spark standalone cluster: a master and one worker from pyspark's own
distribution (bin/spark-class), on loopback, with the job's driver in `python -m app.processing`.

The same records as the local-mode run (`job_run`) must give the same final windows, byte for byte,
and the master must have run the job's executor on its worker. A master URL nobody answers is
refused at once, naming the setting.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyspark
import pytest

from app.common.settings import Settings
from app.localkafka.broker import free_port, port_open
from app.processing.job import checkpoint_location
from app.processing.session import (
    CHECKPOINT_FILE_MANAGER,
    LOCAL_CHECKPOINT_FILE_MANAGER,
    MasterUnreachable,
    build_session,
    session_config,
)
from tests.processing import dataset
from tests.processing.conftest import (
    JobRun,
    expected_final_keys,
    job_environment,
    job_settings,
    output_complete,
    prepare_topics,
    wait_until,
    windows_by_finality,
)
from tests.support.kafka import read_all
from tests.support.pipeline import Process, stop_group

SPARK_HOME = Path(pyspark.__file__).parent


def _daemon(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def standalone_cluster(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(master URL, master log) of a master and a 1-core, 1 GiB worker; stopped afterwards."""
    # SPARK_LOCAL_IP keeps every listener, the web UIs included, on loopback.
    env = os.environ | {"SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1"}
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    master_log = tmp_path / "master.log"
    daemons = [
        _daemon(
            [
                *("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port)),
                *("--webui-port", str(free_port())),
            ],
            master_log,
            env,
        )
    ]
    try:
        wait_until(lambda: port_open(port), 120, "the Spark master")
        daemons.append(
            _daemon(
                [
                    *("org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1"),
                    *("--cores", "1", "--memory", "1g", "--webui-port", str(free_port())),
                    *("--work-dir", str(tmp_path / "work")),
                ],
                tmp_path / "worker.log",
                env,
            )
        )
        wait_until(lambda: "Registering worker" in master_log.read_text(), 120, "the worker to register")
        yield url, master_log
    finally:
        for daemon in reversed(daemons):
            stop_group(daemon, timeout_s=20)


def test_a_standalone_cluster_gives_the_local_modes_exact_windows(
    job_run: JobRun, kafka_broker: Any, standalone_cluster: tuple[str, Path], tmp_path: Path
) -> None:
    master, master_log = standalone_cluster
    records = job_run.records
    settings = job_settings(kafka_broker.bootstrap_servers, tmp_path / "checkpoints", "standalone")
    prepare_topics(settings, records)
    env = job_environment(settings) | {"TELEMETRY_SPARK_MASTER": master}
    job = Process("app.processing", env, tmp_path / "processing.log")
    try:
        wait_until(
            lambda: output_complete(settings, records) or not job.alive(),
            300,
            "final windows and dead letters from the cluster",
        )
        assert job.alive(), job.tail()
    finally:
        job.stop()

    wanted = expected_final_keys(records)
    local, _ = windows_by_finality(job_run.aggregates)
    cluster, _ = windows_by_finality(read_all(settings.kafka_bootstrap_servers, settings.aggregates_topic))
    assert {k: set(cluster[k]) for k in wanted} == {k: set(local[k]) for k in wanted}
    dead = read_all(settings.kafka_bootstrap_servers, settings.dead_letter_topic)
    assert len(dead) == len(dataset.BAD_RECORDS)
    # The work ran on the cluster, not in a local[*] driver.
    log = master_log.read_text()
    assert re.search(r"Registered app telemetry-vwap", log), log[-2000:]
    assert re.search(r"Launching executor app-\S+ on worker", log), log[-2000:]


def test_a_master_nobody_answers_is_refused_at_once_naming_the_setting(tmp_path: Path) -> None:
    closed = free_port()
    settings = Settings(checkpoint_dir=str(tmp_path), spark_master=f"spark://127.0.0.1:{closed}")
    with pytest.raises(MasterUnreachable, match=rf"TELEMETRY_SPARK_MASTER=spark://127\.0\.0\.1:{closed}"):
        build_session(settings)


@pytest.mark.parametrize(
    ("checkpoint_dir", "location"),
    [
        ("/var/lib/telemetry/checkpoints", "/var/lib/telemetry/checkpoints/live"),
        ("s3a://bucket/ckpt", "s3a://bucket/ckpt/live"),
        ("hdfs://namenode:8020/telemetry/", "hdfs://namenode:8020/telemetry/live"),
        ("file:///var/lib/telemetry", "file:///var/lib/telemetry/live"),
    ],
)
def test_checkpoints_take_a_path_or_a_uri(checkpoint_dir: str, location: str) -> None:
    assert checkpoint_location(checkpoint_dir, "live") == location


@pytest.mark.parametrize(
    ("checkpoint_dir", "local"),
    [
        ("/var/lib/telemetry/checkpoints", True),
        ("file:///var/lib/telemetry", True),
        ("s3a://bucket/ckpt", False),
        ("hdfs://namenode:8020/telemetry/", False),
    ],
)
def test_only_local_checkpoints_are_written_by_plain_renames(checkpoint_dir: str, local: bool) -> None:
    config = session_config(Settings(checkpoint_dir=checkpoint_dir))
    assert config.get(CHECKPOINT_FILE_MANAGER) == (LOCAL_CHECKPOINT_FILE_MANAGER if local else None)
