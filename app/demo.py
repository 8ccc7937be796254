"""`make demo`: the whole pipeline on this machine, one command, Ctrl-C stops it all.

Starts a Kafka 4 broker (Docker when a daemon answers, otherwise the Maven Central jars), the
topics, the producer (replaying the bundled sample, or live Binance trades over REST or the
WebSocket stream), the Spark job, the reconciliation against Binance's klines (live sources only)
and the dashboard on http://127.0.0.1:8501. State lives in .run/ so a second demo resumes.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.common.settings import SOURCES, Settings
from app.common.topics import ensure_topics
from app.localkafka.broker import REPO_ROOT, LocalBroker, port_open

log = logging.getLogger("demo")
RUN_DIR = REPO_ROOT / ".run"
KAFKA_IMAGE = "apache/kafka:4.1.1"
DOCKER_CONTAINER = "telemetry-demo-kafka"


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def start_docker_broker(port: int) -> None:
    subprocess.run(["docker", "rm", "-f", DOCKER_CONTAINER], capture_output=True)
    subprocess.run(
        ["docker", "run", "-d", "--name", DOCKER_CONTAINER, "-p", f"127.0.0.1:{port}:9092", KAFKA_IMAGE],
        check=True,
    )
    deadline = time.monotonic() + 90
    while not port_open(port):
        if time.monotonic() > deadline:
            raise TimeoutError("the Kafka container did not open its port in 90 s")
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", choices=SOURCES, default="replay")
    parser.add_argument("--broker", choices=["auto", "docker", "jars"], default="auto")
    parser.add_argument("--port", type=int, default=9092, help="Kafka port (the controller uses port+1)")
    parser.add_argument("--dashboard-port", type=int, default=8501)
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR, help="broker log and Spark checkpoints")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    if port_open(args.port):
        log.error("port %d is in use: stop what runs there or pass --port", args.port)
        return 1
    use_docker = args.broker == "docker" or (args.broker == "auto" and docker_available())
    broker: LocalBroker | None = None
    if use_docker:
        log.info("starting Kafka in Docker (%s)", KAFKA_IMAGE)
        start_docker_broker(args.port)
    else:
        log.info("starting Kafka from the Maven Central jars (no Docker daemon)")
        broker = LocalBroker(data_dir=args.run_dir / "kafka", port=args.port, controller_port=args.port + 1)
        broker.start()

    env = os.environ | {
        "TELEMETRY_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{args.port}",
        "TELEMETRY_SOURCE": args.source,
        "TELEMETRY_CHECKPOINT_DIR": str(args.run_dir / "checkpoints"),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    ensure_topics(Settings.from_env(env))
    python = sys.executable
    commands = {
        "producer": [python, "-m", "app.producer"],
        "spark": [python, "-m", "app.processing"],
        # Idle with the replay source: the sample's trades have no exchange klines to check against.
        "reconcile": [python, "-m", "app.reconcile"],
        "dashboard": [
            python, "-m", "app.dashboard", "--address", "127.0.0.1", "--port", str(args.dashboard_port),
        ],
    }  # fmt: skip
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = failed = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for name, command in commands.items():
            # Own sessions: Ctrl-C reaches only the demo, which stops them in order (dashboard
            # first, producer last) instead of every JVM and worker getting SIGINT at once.
            children[name] = subprocess.Popen(command, env=env, cwd=REPO_ROOT, start_new_session=True)
        log.info("dashboard: http://127.0.0.1:%d  (Ctrl-C stops everything)", args.dashboard_port)
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    log.error("%s exited with %s; stopping the demo", name, child.returncode)
                    stopping = failed = True
            time.sleep(0.5)
    finally:
        for name, child in reversed(children.items()):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in 30 s; killing it", name)
                    child.kill()
        if broker is not None:
            broker.stop()
        elif use_docker:
            subprocess.run(["docker", "stop", DOCKER_CONTAINER], capture_output=True)
        log.info("stopped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
