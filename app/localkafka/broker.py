"""Run Apache Kafka 4 in KRaft combined mode from Maven Central jars: one node, or a cluster of three.

Used by `make demo` when Docker is not available and by the test suite. Every node
listens on 127.0.0.1 only and keeps its log in a directory the caller chooses.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_JARS_DIR = REPO_ROOT / ".cache" / "jars" / "kafka"

_LOG4J2_YAML = """\
Configuration:
  Appenders:
    Console:
      name: CONSOLE
      target: SYSTEM_OUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: CONSOLE
    Logger:
      - name: kafka.server.KafkaServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
"""
# Kafka's tools log to stderr, as upstream's tools-log4j2.yaml has them: a warning on stdout (a node
# just killed cannot be reached) would come before the table a caller parses.
_TOOLS_LOG4J2_YAML = _LOG4J2_YAML.replace("target: SYSTEM_OUT", "target: SYSTEM_ERR")


# Only the quick JIT tier (C1): a Kafka JVM then starts on half the CPU time (a 3-node cluster in
# 11-13 s instead of 20-21 s, a node restart in 4-5 s instead of 9-10 s, on 2 busy cores), and a
# test cluster carries too little traffic to need the optimising tier.
QUICK_JIT = ("-XX:TieredStopAtLevel=1",)
# Kafka's command-line tools run for seconds: a small heap besides (3.6 s of CPU -> 1.6 s measured).
_TOOL_JVM = ("-Xmx256m", "-XX:+UseSerialGC", *QUICK_JIT)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _cluster_id() -> str:
    # Kafka cluster ids are 16 random bytes in URL-safe base64 without padding. One in 64 would
    # begin with "-", which kafka-storage reads as an option: Kafka's own Uuid.randomUuid redraws.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class BrokerTls:
    """SASL_SSL (TLS and SCRAM-SHA-512 logins) on the broker's client and inter-broker listener.

    `users` are the SCRAM users (name -> password) written at format time; the first one is the
    broker's own inter-broker login. The controller listener stays plaintext on loopback.
    """

    keystore: Path  # PKCS12: the broker's key and certificate
    keystore_password: str = field(repr=False)
    ca_file: Path  # PEM: the CA the broker's own inter-broker client trusts
    users: Mapping[str, str] = field(repr=False)

    def server_properties(self, port: int) -> dict[str, str]:
        user, password = next(iter(self.users.items()))
        return {
            "listeners": f"SASL_SSL://127.0.0.1:{port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{user}" password="{password}";'
            ),
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.keystore),
            "ssl.keystore.password": self.keystore_password,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
        }

    def format_arguments(self) -> list[str]:
        arguments = []
        for user, password in self.users.items():
            arguments += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        return arguments


@dataclass
class LocalBroker:
    """A KRaft broker+controller process on loopback.

    The data directory survives `stop()`, so a broker can be stopped and started again on the
    same ports and log (the restart fault case).
    """

    data_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    jars_dir: Path = DEFAULT_JARS_DIR
    heap: str = "512m"
    jvm_options: tuple[str, ...] = ()  # beside the heap and the collector, e.g. QUICK_JIT
    # SASL_SSL on `port` instead of PLAINTEXT.
    tls: BrokerTls | None = None
    process: subprocess.Popen[bytes] | None = None
    # A cluster's nodes share the cluster id and the voters ("1@host:port,..."); alone, a node is
    # its own single voter. `replicas` sizes Kafka's internal topics to the cluster.
    node_id: int = 1
    voters: str = ""
    cluster_id: str = field(default_factory=_cluster_id)
    replicas: int = 1

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def _config_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def _log_dir(self) -> Path:
        return self.data_dir / "log"

    def _classpath(self) -> str:
        if not any(self.jars_dir.glob("kafka_2.13-*.jar")):
            raise FileNotFoundError(
                f"no Kafka jars in {self.jars_dir}; run `make jars` to fetch them from Maven Central"
            )
        return f"{self.jars_dir}/*"

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        min_isr = str(min(self.replicas, 2))
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters or f"{self.node_id}@127.0.0.1:{self.controller_port}",
            "listeners": (f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self._log_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": str(self.replicas),
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": str(self.replicas),
            "transaction.state.log.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "share.coordinator.state.topic.replication.factor": str(self.replicas),
            "share.coordinator.state.topic.min.isr": min_isr,
        }
        if self.tls is not None:
            settings |= self.tls.server_properties(self.port)
            settings["listeners"] += f",CONTROLLER://127.0.0.1:{self.controller_port}"
        if self.voters:
            # A cluster node registers with a quorum its peers may still be starting: on a loaded
            # 2-core machine that took longer than Kafka's default minute, and the node exited.
            settings["initial.broker.registration.timeout.ms"] = "300000"
            # A killed node's partitions move once the controller fences it, after this long without
            # a heartbeat: 9 s by default, two thirds of the leader-loss stall. Four heartbeats fit in
            # it still (Kafka's default ratio is 4.5), so a busy but live node is not fenced.
            settings["broker.session.timeout.ms"] = "6000"
            settings["broker.heartbeat.interval.ms"] = "1500"
        self._config_path.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        # It holds the inter-broker password when TLS is on.
        self._config_path.chmod(0o600)
        (self.data_dir / "log4j2.yaml").write_text(_LOG4J2_YAML)
        (self.data_dir / "tools-log4j2.yaml").write_text(_TOOLS_LOG4J2_YAML)

    def _java(self, main_class: str, *args: str) -> list[str]:
        """The broker's own command line."""
        options = (f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC", *self.jvm_options)
        return self._jvm(options, "log4j2.yaml", main_class, *args)

    def tool(self, main_class: str, *args: str) -> list[str]:
        """The command line of one of Kafka's tools, run with this node's jars and logging."""
        return self._jvm(_TOOL_JVM, "tools-log4j2.yaml", main_class, *args)

    def _jvm(self, options: Sequence[str], log_config: str, main_class: str, *args: str) -> list[str]:
        return [
            "java",
            *options,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / log_config}",
            "-cp",
            self._classpath(),
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        if (self._log_dir / "meta.properties").exists():
            return
        subprocess.run(
            self.tool(
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                "-t",
                self.cluster_id,
                "-c",
                str(self._config_path),
                *(self.tls.format_arguments() if self.tls is not None else []),
            ),
            check=True,
            capture_output=True,
        )

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the broker and wait until its client listener accepts connections."""
        self.launch()
        self.wait_ready(timeout_s)

    def launch(self) -> None:
        """Start the process without waiting: a cluster node serves only once a quorum is up."""
        if self.process is not None and self.process.poll() is None:
            return
        self._write_config()
        self._format_storage()
        output = open(self.data_dir / "broker.out", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(self._config_path)),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output.close()

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until the client listener accepts connections."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Kafka broker exited with {self.process.returncode}; see {self.data_dir / 'broker.out'}"
                )
            if port_open(self.port):
                log.info("kafka broker ready on %s", self.bootstrap_servers)
                return
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"Kafka broker not ready on {self.bootstrap_servers} in {timeout_s}s")

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the broker with SIGTERM (a controlled shutdown), SIGKILL if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no controlled shutdown, no flush (the data directory stays for a restart)."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        self.process = None

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class QuorumNode:
    """One voter as the active controller sees it (kafka-metadata-quorum describe --replication)."""

    node_id: int
    log_end_offset: int
    lag: int
    leader: bool


@dataclass
class LocalCluster:
    """Nodes that are each broker and controller, so all of them are the quorum's voters (three
    by default: one may be lost). Each node has its own ports and data directory under `data_dir`."""

    data_dir: Path
    size: int = 3
    jars_dir: Path = DEFAULT_JARS_DIR
    heap: str = "384m"
    nodes: list[LocalBroker] = field(init=False)

    def __post_init__(self) -> None:
        controller_ports = [free_port() for _ in range(self.size)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(controller_ports))
        cluster_id = _cluster_id()
        self.nodes = [
            LocalBroker(
                data_dir=self.data_dir / f"node{i + 1}",
                controller_port=port,
                jars_dir=self.jars_dir,
                heap=self.heap,
                jvm_options=QUICK_JIT,
                node_id=i + 1,
                voters=voters,
                cluster_id=cluster_id,
                replicas=self.size,
            )
            for i, port in enumerate(controller_ports)
        ]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def node(self, node_id: int) -> LocalBroker:
        return self.nodes[node_id - 1]

    def start(self, timeout_s: float = 120.0) -> None:
        """Start every node, then wait for each: none serves clients before a quorum is up."""
        for node in self.nodes:
            node.launch()
        deadline = time.monotonic() + timeout_s
        try:
            for node in self.nodes:
                node.wait_ready(max(deadline - time.monotonic(), 1.0))
        except Exception:
            self.stop()  # no node outlives a cluster that did not start
            raise

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM to every node at once, SIGKILL to any still running after `timeout_s`. One at a
        time, the last node's controlled shutdown waited for a quorum already gone (30 s each)."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            node.stop(timeout_s=max(deadline - time.monotonic(), 0.1))

    def quorum(self) -> list[QuorumNode]:
        """The voters' replication state, asked of the live nodes with Kafka's own tool."""
        live = ",".join(n.bootstrap_servers for n in self.nodes if n.process and n.process.poll() is None)
        node = self.nodes[0]
        out = subprocess.run(
            node.tool(
                "org.apache.kafka.tools.MetadataQuorumCommand",
                "--bootstrap-server",
                live,
                "describe",
                "--replication",
            ),
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return parse_quorum_replication(out)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def parse_quorum_replication(text: str) -> list[QuorumNode]:
    """The voters in `kafka-metadata-quorum describe --replication` output (observers left out)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    header = lines[0]
    column = {name: header.index(name) for name in ("NodeId", "LogEndOffset", "Lag", "Status")}
    nodes = []
    for row in lines[1:]:
        status = row[column["Status"]]
        if status in ("Leader", "Follower"):
            nodes.append(
                QuorumNode(
                    node_id=int(row[column["NodeId"]]),
                    log_end_offset=int(row[column["LogEndOffset"]]),
                    lag=int(row[column["Lag"]]),
                    leader=status == "Leader",
                )
            )
    return nodes


def main() -> None:
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="Run a local single-node Kafka 4 broker (KRaft).")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / ".run" / "kafka")
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--controller-port", type=int, default=9093)
    parser.add_argument("--jars-dir", type=Path, default=DEFAULT_JARS_DIR)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    broker = LocalBroker(
        data_dir=args.data_dir,
        port=args.port,
        controller_port=args.controller_port,
        jars_dir=args.jars_dir,
    )
    broker.start()
    signal.signal(signal.SIGTERM, lambda *_: broker.stop())
    try:
        assert broker.process is not None
        broker.process.wait()
    except KeyboardInterrupt:
        broker.stop()


if __name__ == "__main__":
    os.environ.setdefault("KAFKA_HEAP_OPTS", "")
    main()
