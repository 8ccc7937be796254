"""The job's SparkSession: local by default, loopback-only unless told otherwise, no UI, sized for a
2-4 core appliance. `TELEMETRY_SPARK_MASTER` puts it on a standalone cluster instead."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from pyspark import SparkContext
from pyspark.sql import SparkSession

from app.common.settings import Settings
from app.processing.class_archive import ClassArchive

LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")
# The stateful processor API (transformWithState) runs on RocksDB only.
ROCKSDB_STATE_STORE = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"


# Caps on the JVM's memory outside the heap, which grew to 2.96 GiB with a 1 s trigger: direct
# buffers (Netty, the Kafka connector), class metadata (generated code adds classes
# every query plan) and JIT code. Each is sized well above what the job uses, so a cap is a bound,
# never a slowdown: a full code cache would stop the JIT compiler.
JVM_NATIVE_CAPS = (
    "-XX:MaxDirectMemorySize=256m",
    "-XX:MaxMetaspaceSize=256m",
    "-XX:ReservedCodeCacheSize=160m",
)
# HotSpot never JIT-compiles a method of more than 8,000 bytes of bytecode, and the code Spark
# generates for the record checks (app/processing/transform.py) is larger: without this the parse
# runs interpreted (measured on 100,000 records: 27.7 s -> 5.8 s on the first batch, nearly 5 times
# faster; 2.8-4.0 s -> 1.7-1.9 s after, about twice).
JIT_HUGE_METHODS = "-XX:-DontCompileHugeMethods"
# The throughput collector, not G1: each micro-batch allocates short-lived rows and buffers, some large
# enough to be G1's "humongous" objects, whose allocations started G1's concurrent cycles, and on 2
# cores its concurrent threads and write barriers take from the tasks. Replays of one 1,000,000-trade
# topic, alternating: the job 38,352 / 47,794 trades/s with G1, 45,255 / 53,565 with this; the
# peer-style reference, which shares the session, 44,549 / 47,326 and 42,434 / 52,030 (no change).
# Peak RSS 0.90-1.06 and 0.91 GiB.
GARBAGE_COLLECTOR = "-XX:+UseParallelGC"
# glibc gives each thread that allocates its own malloc arena (64 MiB of address space each, much of
# it resident after a burst); the JVM's many threads need no more than two.
MALLOC_ARENAS = "2"


# Spark's default checkpoint writer renames each file through Hadoop's FileContext, which on a local
# disk forks `readlink` for both names of every rename and of its checksum file: about 16 processes
# a micro-batch, which cost 120 ms of each 500 ms trigger at 300 trades/s (p50 batch 516 -> 397 ms,
# measured). The FileSystem-based writer renames with one system call, and a local rename is atomic,
# which is all it relies on. Other file systems (hdfs://, s3a://) keep Spark's default.
CHECKPOINT_FILE_MANAGER = "spark.sql.streaming.checkpointFileManagerClass"
LOCAL_CHECKPOINT_FILE_MANAGER = (
    "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
)


def checkpoint_writer(checkpoint_dir: str) -> dict[str, str]:
    """The checkpoint writer setting for `checkpoint_dir` (a path or a URI); none for a remote one."""
    if urlsplit(checkpoint_dir).scheme in ("", "file"):
        return {CHECKPOINT_FILE_MANAGER: LOCAL_CHECKPOINT_FILE_MANAGER}
    return {}


# Built from app/processing/java by its build.sh (`make jars`, the pipeline role).
LEDGER_JAR = "telemetry-ledger.jar"


def job_jars(jars_dir: Path) -> list[Path]:
    """The Kafka connector jars and the job's stateful processor, which `make jars` puts in
    `jars_dir`; a clear error when either is missing."""
    jars = sorted(jars_dir.glob("*.jar"))
    if not any(jar.name.startswith("spark-sql-kafka") for jar in jars):
        raise FileNotFoundError(f"no Spark Kafka connector in {jars_dir}; run `make jars`")
    if not (jars_dir / LEDGER_JAR).is_file():
        raise FileNotFoundError(f"no {LEDGER_JAR} in {jars_dir}; run `make jars`")
    return jars


def session_config(settings: Settings, class_archive: tuple[str, ...] = ()) -> dict[str, str]:
    """Every Spark setting the job depends on, as one reviewable mapping; `class_archive` is the
    driver's options for its class-data archive (class_archive.ClassArchive.jvm_options)."""
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "telemetry-vwap",
        "spark.jars": ",".join(str(jar) for jar in job_jars(settings.spark_jars_dir)),
        "spark.driver.memory": settings.spark_driver_memory,
        # Loopback by default: the driver's RPC and block manager listen on no outside interface
        # unless a cluster's executors must reach them.
        "spark.driver.host": settings.spark_driver_host,
        "spark.driver.bindAddress": settings.spark_driver_bind_address,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": " ".join(
            (
                f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
                *JVM_NATIVE_CAPS,
                JIT_HUGE_METHODS,
                GARBAGE_COLLECTOR,
                *class_archive,
            )
        ),
        # Streaming disables AQE anyway; saying so up front spares a warning per query.
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        # ANSI mode turns a decimal overflow into a failed query instead of a silent NULL.
        "spark.sql.ansi.enabled": "true",
        "spark.sql.streaming.stateStore.providerClass": ROCKSDB_STATE_STORE,
        # One cap for RocksDB's block cache and write buffers across the process: its native
        # memory is outside the JVM heap and would otherwise grow with each state store instance.
        "spark.sql.streaming.stateStore.rocksdb.boundedMemoryUsage": "true",
        "spark.sql.streaming.stateStore.rocksdb.maxMemoryUsageMB": "64",
        # Each commit writes the batch's changes instead of a whole RocksDB snapshot (snapshots move
        # to a background task every few batches). Measured at 300 trades/s, 500 ms trigger: state
        # commit p50 142 -> 5 ms; with one shuffle partition (settings.py), batch p50 508 -> 348 ms
        # and the job's CPU 68 -> 57 s in 43 s. Spark allows turning it on for an existing checkpoint.
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        "spark.sql.streaming.metricsEnabled": "false",
        **checkpoint_writer(settings.checkpoint_dir),
    }


class MasterUnreachable(ConnectionError):
    """No Spark master answers at the configured URL."""


def check_master(master: str, timeout_s: float = 5.0) -> None:
    """Fail at once, naming the setting, when a `spark://` master (or every one of an HA list) does not
    answer; Spark itself would retry for minutes before giving up."""
    if not master.startswith("spark://"):
        return
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                return
        except (OSError, ValueError):
            continue
    raise MasterUnreachable(f"no Spark master answers at TELEMETRY_SPARK_MASTER={master}")


def build_session(settings: Settings, write_class_archive: bool = False) -> SparkSession:
    """The job's session; `write_class_archive` for the job's own process, which stops it with
    `stop_session` (class_archive.py)."""
    check_master(settings.spark_master)
    os.environ.setdefault("SPARK_LOCAL_IP", settings.spark_driver_bind_address)
    # Read by glibc at start-up: set before the JVM starts.
    os.environ.setdefault("MALLOC_ARENA_MAX", MALLOC_ARENAS)
    builder = SparkSession.builder
    class_archive = ClassArchive.for_this_runtime().jvm_options(write_class_archive)
    for key, value in session_config(settings, class_archive).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def stop_session(spark: SparkSession, exit_timeout_s: float = 20.0) -> None:
    """Stop `spark` and let its JVM exit before this process does. The JVM ends when its stdin (this
    process's pipe) closes, then runs its shutdown hooks, which delete Spark's local directories
    (shuffle files and state-store copies, hundreds of MB after a replay) and RocksDB's extracted
    native library. Left to end when this process exits, it was often killed mid-hook by what
    stopped both: systemd's KillMode=mixed and the tests' process groups send SIGKILL to whatever is
    left once the main process is gone. Three 100,000-trade replays, each stopped as the tests do:
    each left its library copy in /tmp and two their local directory; stopped through this, none.
    A JVM that started without a class-data archive writes one as it exits, which is kept then."""
    spark.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    jvm = getattr(gateway, "proc", None)  # the process pyspark started the JVM as
    # Disconnect py4j while the JVM still answers. Left connected, it goes on sending to the exited
    # JVM: its finalizer thread tells it of each Java object Python collects, and a failed send is
    # logged as an ERROR ("Exception while sending command.") when the JVM's end resets.
    gateway.shutdown()
    SparkContext._gateway = None
    SparkContext._jvm = None
    if jvm is None or jvm.stdin is None:
        return
    jvm.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        jvm.wait(timeout=exit_timeout_s)
    if jvm.returncode == 0:
        ClassArchive.for_this_runtime().keep_trained()
