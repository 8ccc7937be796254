"""The settings: one duration parser that agrees with Spark's, and the metadata-driven command lines."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from py4j.java_gateway import get_field
from pyspark.errors import IllegalArgumentException
from pyspark.sql import DataFrame, SparkSession

from app.common.settings import (
    REPO_ROOT,
    SERVICES,
    Duration,
    Settings,
    command_line,
    event_time_lead_ms,
    read_by,
)
from app.processing.session import build_session

# What Spark accepts for a watermark and a trigger interval, and what each is in milliseconds.
ACCEPTED = {
    "10 seconds": 10_000,
    "1 second": 1_000,
    "500 milliseconds": 500,
    "2 minutes": 120_000,
    "1 minute 30 seconds": 90_000,
    "interval 10 seconds": 10_000,
    "INTERVAL 10 Seconds": 10_000,
    "interval 1 minute 30 seconds": 90_000,
    "1.5 seconds": 1_500,
    ".5 second": 500,
    "1. seconds": 1_000,
    "interval .25 seconds": 250,
    "1 day 1 hour": 90_000_000,
    "2 weeks": 1_209_600_000,
    "1 minute -30 seconds": 30_000,
    "+3 minutes": 180_000,
    "1500 microseconds": 1,
    " 10 seconds ": 10_000,
    "10\tseconds": 10_000,
}
# Refused here; the test below shows Spark refuses each too, as a trigger interval at least (months
# have no fixed length, and a quoted SQL literal is a watermark-only form).
REFUSED = [
    "",
    "10",
    "ten seconds",
    "10 fortnights",
    "10 sec",
    "10 seconds5 minutes",
    "1.5 minutes",
    "-1 second",
    "interval",
    "intervals 10 seconds",
    "1e3 milliseconds",
    "1.1234567891 seconds",
    "1 month",
    "interval 1 year",
    "interval '10 seconds'",
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED.items())
def test_spark_intervals_read_as_milliseconds(text: str, expected: int) -> None:
    assert Duration.parse(text) == Duration(text, expected)


@pytest.mark.parametrize("text", REFUSED)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|fraction|fixed length|negative"):
        Duration.parse(text)


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """The job's own session configuration (ANSI mode included), without Kafka."""
    session = build_session(Settings(checkpoint_dir=str(tmp_path_factory.mktemp("spark"))))
    yield session
    session.stop()


def _spark_watermark_ms(frame: DataFrame, text: str) -> int:
    delay = frame.withWatermark("t", text)._jdf.queryExecution().logical().delay()
    days = get_field(delay, "months") * 31 + get_field(delay, "days")  # Spark counts a month as 31 days
    return int((days * 86_400_000_000 + get_field(delay, "microseconds")) // 1000)


def _spark_trigger_ms(spark: SparkSession, text: str) -> int:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    return int(jvm.org.apache.spark.sql.streaming.Trigger.ProcessingTime(text).intervalMs())


def test_spark_reads_every_accepted_form_as_the_same_milliseconds(spark: SparkSession) -> None:
    frame = spark.sql("SELECT TIMESTAMP'2024-01-01 00:00:00' AS t")
    for text, expected in ACCEPTED.items():
        assert _spark_watermark_ms(frame, text) == expected, text
        assert _spark_trigger_ms(spark, text) == expected, text


def test_spark_refuses_every_refused_form_as_a_trigger(spark: SparkSession) -> None:
    for text in REFUSED:
        with pytest.raises(IllegalArgumentException):
            _spark_trigger_ms(spark, text)


def test_a_bad_duration_names_its_variable() -> None:
    with pytest.raises(SystemExit, match="TELEMETRY_WATERMARK_DELAY='1 minute and a bit'"):
        Settings.from_env({"TELEMETRY_WATERMARK_DELAY": "1 minute and a bit"})
    with pytest.raises(ValueError, match="TELEMETRY_EVENT_TIME_LEAD"):
        Settings(event_time_lead="soon")  # type: ignore[arg-type]


def test_durations_are_parsed_once_and_spark_gets_the_text_as_written() -> None:
    settings = Settings.from_env({"TELEMETRY_WATERMARK_DELAY": "interval 1 minute 30 seconds"})
    assert settings.watermark_delay == Duration("interval 1 minute 30 seconds", 90_000)
    assert Settings(trigger_interval="2 seconds").trigger_interval.ms == 2_000  # type: ignore[arg-type]


def test_an_unset_event_time_lead_is_half_of_whatever_watermark_the_job_uses() -> None:
    for watermark, lead_ms in (("10 seconds", 5_000), ("1 minute 30 seconds", 45_000)):
        settings = Settings.from_env({"TELEMETRY_WATERMARK_DELAY": watermark})
        assert settings.event_time_lead is None
        assert event_time_lead_ms(settings.event_time_lead, settings.watermark_delay) == lead_ms
    chosen = Settings.from_env({"TELEMETRY_EVENT_TIME_LEAD": "2 seconds"})
    assert event_time_lead_ms(chosen.event_time_lead, chosen.watermark_delay) == 2_000


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {action.dest for action in parser._actions if action.dest != "help"}


@pytest.mark.parametrize("service", SERVICES)
def test_each_command_line_offers_the_settings_its_service_reads(service: str) -> None:
    parser = command_line(service, None)
    assert _flags(parser) == set(read_by(service))
    help_text = " ".join(parser.format_help().split())
    for field in dataclasses.fields(Settings):
        if service in field.metadata["read_by"]:
            assert " ".join(field.metadata["help"].split()) in help_text, field.name


def test_every_field_says_who_reads_it_and_why() -> None:
    for field in dataclasses.fields(Settings):
        assert field.metadata["help"], field.name
        assert field.metadata["read_by"] <= set(SERVICES), field.name
        assert field.metadata["read_by"], field.name


def test_flags_win_over_the_environment(tmp_path: Path) -> None:
    parser = command_line("processing", None)
    args = parser.parse_args(["--watermark-delay", "20 seconds", "--checkpoint-dir", str(tmp_path)])
    settings = Settings.from_args(args, {"TELEMETRY_WATERMARK_DELAY": "30 seconds"})
    assert (settings.watermark_delay.ms, settings.checkpoint_dir) == (20_000, str(tmp_path))


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_prints_its_settings_as_help(service: str) -> None:
    command = [sys.executable, "-m", f"app.{service}", "--help"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True, cwd=REPO_ROOT)
    offered = set(re.findall(r"--([a-z-]+) TELEMETRY_", result.stdout))
    assert offered == {name.replace("_", "-") for name in read_by(service)}
