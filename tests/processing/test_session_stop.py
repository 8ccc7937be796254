"""`stop_session` in a process of its own: the driver's JVM exits, and nothing is sent to it after."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.pipeline import REPO_ROOT

# A Java object Python still holds when the session stops, collected after: py4j's finalizer thread
# then tells the JVM to drop it. py4j logs at INFO so a send that fails is seen whichever level it
# picks (ERROR when the JVM's end resets, as it did once in CI's e2e test; INFO when it retries).
DRIVER = textwrap.dedent(
    """
    import gc, logging, time
    from pyspark import SparkContext
    from pyspark.sql import SparkSession
    from app.processing.session import stop_session

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
    jvm = SparkContext._gateway.proc
    held = spark._jvm.java.lang.StringBuilder("held past the stop")
    stop_session(spark)
    print("jvm exit code", jvm.poll(), flush=True)
    del held
    gc.collect()
    time.sleep(2.5)  # py4j's finalizer thread looks at its queue once a second
    """
)


def test_the_jvm_exits_with_the_session_and_nothing_is_sent_to_it_after() -> None:
    driver = subprocess.run(
        [sys.executable, "-c", DRIVER],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = driver.stdout + driver.stderr
    assert driver.returncode == 0, output[-3000:]
    assert "jvm exit code 0" in driver.stdout, output[-3000:]
    assert "Exception while sending command" not in output, output[-3000:]
