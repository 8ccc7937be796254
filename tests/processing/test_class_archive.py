"""The driver JVM's class-data archive (app/processing/class_archive.py): which options a start gets,
what a clean exit keeps, and, with real JVMs, that a later session maps what the job's first one wrote."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from app.processing.class_archive import ABANDONED_AFTER_S, QUIET, ClassArchive, fingerprint
from tests.support.pipeline import REPO_ROOT


def test_a_start_without_an_archive_writes_one_at_exit_under_a_name_of_its_own(tmp_path: Path) -> None:
    archive = ClassArchive(tmp_path / "cache", "k1")
    options = archive.jvm_options(write=True)
    assert options == (f"-XX:ArchiveClassesAtExit={archive.training_path()}", QUIET)
    assert archive.training_path().parent.is_dir()
    assert archive.training_path() != archive.path
    assert str(os.getpid()) in archive.training_path().name


def test_a_start_with_an_archive_maps_it(tmp_path: Path) -> None:
    archive = ClassArchive(tmp_path, "k1")
    archive.path.write_bytes(b"archive")
    assert archive.jvm_options(write=True) == (f"-XX:SharedArchiveFile={archive.path}", QUIET)
    assert archive.jvm_options(write=False) == (f"-XX:SharedArchiveFile={archive.path}", QUIET)


def test_only_a_session_told_to_write_one_does(tmp_path: Path) -> None:
    archive = ClassArchive(tmp_path / "cache", "k1")
    assert archive.jvm_options(write=False) == ()
    assert not archive.directory.exists()


def test_no_archive_where_its_directory_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    assert ClassArchive(tmp_path / "file" / "cache", "k1").jvm_options(write=True) == ()


def test_a_clean_exit_keeps_what_was_written_and_removes_stale_and_abandoned_files(tmp_path: Path) -> None:
    archive = ClassArchive(tmp_path, "new")
    archive.training_path().write_bytes(b"written at exit")
    stale = ClassArchive(tmp_path, "old").path
    stale.write_bytes(b"of other jars")
    abandoned = tmp_path / "spark-new.1.tmp"
    abandoned.write_bytes(b"killed midway")
    old = abandoned.stat().st_mtime - ABANDONED_AFTER_S - 1
    os.utime(abandoned, (old, old))
    in_progress = tmp_path / "spark-new.2.tmp"
    in_progress.write_bytes(b"another JVM still writing")

    archive.keep_trained()

    assert archive.path.read_bytes() == b"written at exit"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([archive.path.name, in_progress.name])


def test_nothing_is_kept_when_nothing_was_written(tmp_path: Path) -> None:
    archive = ClassArchive(tmp_path, "k1")
    archive.keep_trained()
    assert list(tmp_path.iterdir()) == []


def test_the_name_changes_with_any_jar_it_was_made_from(tmp_path: Path) -> None:
    jars = [tmp_path / "a.jar", tmp_path / "b.jar"]
    for jar in jars:
        jar.write_bytes(b"classes")
    before = fingerprint(jars)
    assert fingerprint(jars) == before
    jars[1].write_bytes(b"other classes")
    assert fingerprint(jars) != before


# Prints whether the driver's JVM maps an archive of the cache, then stops as the job does.
DRIVER = textwrap.dedent(
    """
    import sys
    from pyspark import SparkContext
    from app.common.settings import Settings
    from app.processing.session import build_session, stop_session

    spark = build_session(Settings(checkpoint_dir=sys.argv[1]), write_class_archive=sys.argv[3] == "write")
    maps = open(f"/proc/{SparkContext._gateway.proc.pid}/maps").read()
    print("mapped", sys.argv[2] in maps and ".jsa" in maps, flush=True)
    stop_session(spark)
    """
)


def test_the_job_writes_the_archive_at_its_first_stop_and_every_later_session_maps_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = dict(os.environ) | {"XDG_CACHE_HOME": str(cache)}

    def start(archive: str) -> str:
        driver = subprocess.run(
            [sys.executable, "-c", DRIVER, str(tmp_path / "checkpoints"), str(cache), archive],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert driver.returncode == 0, (driver.stdout + driver.stderr)[-3000:]
        assert "[cds" not in driver.stdout + driver.stderr  # the writer's warnings are silenced
        return driver.stdout

    assert "mapped False" in start("map only")
    assert not (cache / "telemetry").exists()
    assert "mapped False" in start("write")
    archives = list((cache / "telemetry").glob("*.jsa"))
    assert len(archives) == 1
    assert list((cache / "telemetry").glob("*.tmp")) == []
    assert "mapped True" in start("map only")
    assert list((cache / "telemetry").glob("*.jsa")) == archives
