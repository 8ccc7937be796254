"""What tests need to know about a running LocalCluster: partition leaders and ISRs, the health gate
a rolling restart waits on, and a watch of a topic's end offsets over time (to time a stall)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from app.localkafka.broker import LocalCluster
from tests.support.pipeline import wait_for


@dataclass(frozen=True)
class PartitionState:
    topic: str
    partition: int
    leader: int  # -1 while there is none
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


def partition_states(bootstrap: str, topics: Iterable[str]) -> list[PartitionState]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests-cluster", request_timeout_ms=5000)
    try:
        described = admin.describe_topics(list(topics))
    finally:
        admin.close()
    return [
        PartitionState(t["topic"], p["partition"], p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
        for t in described
        for p in t["partitions"]
    ]


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> leader node id (-1: none)."""
    return {s.partition: s.leader for s in partition_states(bootstrap, [topic])}


def unhealthy(cluster: LocalCluster, topics: Iterable[str]) -> str | None:
    """Why the cluster is not yet fit to lose a node (None: it is): every node up, every voter
    caught up with the active controller, every partition led and with its full ISR."""
    down = [n.node_id for n in cluster.nodes if n.process is None or n.process.poll() is not None]
    if down:
        return f"nodes down: {down}"
    # The partitions first: asking the quorum starts a JVM (Kafka's own tool), so only once they pass.
    try:
        states = partition_states(cluster.bootstrap_servers, topics)
    except Exception as exc:  # a node still starting answers errors
        return f"not answering: {type(exc).__name__}"
    short = [f"{s.topic}/{s.partition}" for s in states if s.leader < 0 or set(s.isr) != set(s.replicas)]
    if short:
        return f"partitions without a leader or a full ISR: {short}"
    try:
        voters = cluster.quorum()
    except Exception as exc:  # SubprocessError among them
        return f"quorum not answering: {type(exc).__name__}"
    if len(voters) != cluster.size or not any(v.leader for v in voters):
        return f"quorum: {voters}"
    lagging = [v.node_id for v in voters if v.lag > 0]
    return f"voters behind the active controller: {lagging}" if lagging else None


def wait_healthy(cluster: LocalCluster, topics: Iterable[str], timeout_s: float) -> None:
    names = list(topics)
    wait_for(lambda: unhealthy(cluster, names) is None, timeout_s, "a healthy cluster", interval_s=0.5)


class OffsetWatch:
    """Samples a topic's per-partition end offsets every `interval_s` in a thread, with wall times."""

    def __init__(self, bootstrap: str, topic: str, interval_s: float = 0.1) -> None:
        self.samples: list[tuple[float, dict[int, int]]] = []
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, request_timeout_ms=3000
        )
        partitions = self._consumer.partitions_for_topic(topic) or set()
        self._tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._interval_s = interval_s
        self._thread = threading.Thread(target=self._run, name=f"offsets-{topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                ends = self._consumer.end_offsets(self._tps)
            except Exception:  # a broker is away: this sample is missing, the next one counts
                continue
            self.samples.append((time.time(), {tp.partition: end for tp, end in ends.items()}))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()

    def resumed_after(self, at: float, partitions: Iterable[int]) -> float | None:
        """Seconds from `at` to the first sample in which `partitions` hold more than they did at `at`."""
        wanted = list(partitions)
        before = [total for t, total in self._totals(wanted) if t <= at]
        if not before:
            return None
        for t, total in self._totals(wanted):
            if t > at and total > before[-1]:
                return t - at
        return None

    def _totals(self, partitions: list[int]) -> list[tuple[float, int]]:
        return [(t, sum(ends.get(p, 0) for p in partitions)) for t, ends in self.samples]


def wait_new_leader(
    bootstrap: str, topic: str, partitions: Iterable[int], gone: int, timeout_s: float
) -> None:
    """Wait until each of `partitions` is led by a node other than `gone`."""
    wanted = list(partitions)
    wait_for(lambda: led_elsewhere(bootstrap, topic, wanted, gone), timeout_s,
             f"a new leader of {topic} {wanted}", interval_s=0.2)  # fmt: skip


def led_elsewhere(bootstrap: str, topic: str, partitions: Iterable[int], gone: int) -> bool:
    """Whether each of `partitions` is led by a node other than `gone`."""
    try:
        now = leaders(bootstrap, topic)
    except Exception:  # the admin client may still be talking to the node that went
        return False
    return all(now.get(p, -1) not in (-1, gone) for p in partitions)
