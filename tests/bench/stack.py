"""Starting the pipeline's processes for a benchmark run, the appliance's default settings, and the
dashboard with a browser session (so its server really renders)."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

from app.common.settings import Settings
from app.localkafka.broker import free_port
from tests.support.pipeline import Process, stop_group, wait_for

CHROMIUM = "/usr/bin/chromium"
SPARK_STARTED = "streaming "  # app.processing logs "streaming <raw> -> <aggregates>" once running


def default_settings_env() -> dict[str, str]:
    """Settings' own defaults for what tests/support/pipeline_env sets to test-friendly values."""
    defaults = Settings()
    return {
        "TELEMETRY_POLL_INTERVAL_S": str(defaults.poll_interval_s),
        "TELEMETRY_WEIGHT_BUDGET_PER_MINUTE": str(defaults.weight_budget_per_minute),
        "TELEMETRY_HTTP_TIMEOUT_S": str(defaults.http_timeout_s),
        "TELEMETRY_WATERMARK_DELAY": defaults.watermark_delay.text,
        "TELEMETRY_TRIGGER_INTERVAL": defaults.trigger_interval.text,
        "TELEMETRY_SHUFFLE_PARTITIONS": str(defaults.shuffle_partitions),
        "TELEMETRY_MAX_OFFSETS_PER_TRIGGER": str(defaults.max_offsets_per_trigger),
        "TELEMETRY_SPARK_DRIVER_MEMORY": defaults.spark_driver_memory,
    }


def settings_used(env: dict[str, str]) -> dict[str, str]:
    """The TELEMETRY_* settings of a run (topic names left out), for the report."""
    skip = ("TOPIC", "BOOTSTRAP", "CHECKPOINT", "BASE_URL", "JARS_DIR", "REPLAY_FILE")
    return {
        k: v for k, v in sorted(env.items()) if k.startswith("TELEMETRY_") and not any(s in k for s in skip)
    }


def start_spark(
    env: dict[str, str], log: Path, *args: str, timeout_s: float = 300, module: str = "app.processing"
) -> Process:
    """The streaming job (`python -m app.processing`, or a reference job's module), waited for until
    its query runs."""
    spark = Process(module, env, log, *args)
    try:
        wait_for(lambda: SPARK_STARTED in spark.log_text(), timeout_s, "the Spark queries", [spark])
    except BaseException:
        spark.kill()
        raise
    return spark


class Dashboard:
    """`python -m app.dashboard` on a free loopback port, and optionally headless Chromium
    holding one session open (without a session Streamlit never runs the page nor opens the feed)."""

    def __init__(self, env: dict[str, str], work: Path, browser: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = Process(
            "app.dashboard",
            env,
            work / "dashboard.log",
            "--address",
            "127.0.0.1",
            "--port",
            str(self.port),
        )
        self.browser: subprocess.Popen[bytes] | None = None
        try:
            wait_for(self._healthy, 90, "the dashboard's health check", [self.server])
            if browser and os.path.exists(CHROMIUM):
                self.browser = subprocess.Popen(
                    [
                        # Niced: it stands for a user's browser, which would not share the appliance's cores.
                        "nice",
                        "-n",
                        "10",
                        CHROMIUM,
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        f"--user-data-dir={work / 'chromium-profile'}",
                        "--remote-debugging-address=127.0.0.1",
                        "--remote-debugging-port=0",
                        "--window-size=1500,1250",
                        self.url,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except BaseException:
            self.stop()
            raise

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as answer:
                return bool(answer.read())
        except OSError:
            return False

    def stop(self) -> None:
        if self.browser is not None:
            stop_group(self.browser, timeout_s=10)
        self.server.stop()


def sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)
