"""The job's SparkSession: local, loopback-only, no UI, sized for a 2-4 core appliance."""

from __future__ import annotations

import os
from pathlib import Path

from pyspark.sql import SparkSession

from app.common.settings import Settings

LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")
HDFS_STATE_STORE = "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider"
ROCKSDB_STATE_STORE = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"


def connector_jars(jars_dir: Path) -> list[Path]:
    """The Kafka connector jars fetched by `make jars`; a clear error when they are missing."""
    jars = sorted(jars_dir.glob("*.jar"))
    if not any(jar.name.startswith("spark-sql-kafka") for jar in jars):
        raise FileNotFoundError(f"no Spark Kafka connector in {jars_dir}; run `make jars`")
    return jars


def session_config(settings: Settings, state_store: str = HDFS_STATE_STORE) -> dict[str, str]:
    """Every Spark setting the job depends on, as one reviewable mapping."""
    return {
        "spark.master": "local[*]",
        "spark.app.name": "telemetry-vwap",
        "spark.jars": ",".join(str(jar) for jar in connector_jars(settings.spark_jars_dir)),
        "spark.driver.memory": settings.spark_driver_memory,
        # Loopback only: the driver's RPC and block manager never listen on an outside interface.
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        # Streaming disables AQE anyway; saying so up front spares a warning per query.
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        # ANSI mode turns a decimal overflow into a failed query instead of a silent NULL.
        "spark.sql.ansi.enabled": "true",
        "spark.sql.streaming.stateStore.providerClass": state_store,
        "spark.sql.streaming.metricsEnabled": "false",
    }


def build_session(settings: Settings, state_store: str = HDFS_STATE_STORE) -> SparkSession:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder
    for key, value in session_config(settings, state_store).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
