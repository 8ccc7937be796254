"""One cluster fault case end to end: the fault matrix's run (tests/faults/runner.py: fake exchange,
supervised producer and Spark job, the seeded trades fed in chunks, what every topic holds), on a
3-node LocalCluster whose topics the app creates with RF 3 and min.insync.replicas 2, with the
dashboard's feed reading throughout and the raw topic's end offsets sampled to time the stall."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.common.schema import Trade, WindowStats
from app.common.settings import Settings
from app.common.topics import ensure_topics
from app.dashboard.feed import FeedState, WindowFeed
from app.localkafka.broker import LocalCluster
from tests.faults import dataset
from tests.faults.cases import Case, Size
from tests.faults.checks import window_values
from tests.faults.dataset import SYMBOLS
from tests.faults.runner import CaseRun, Observation, Shared, _quiet_end_offsets
from tests.support.cluster import OffsetWatch, leaders, wait_healthy, wait_new_leader
from tests.support.kafka import read_all
from tests.support.pipeline import REPO_ROOT, new_topic_names, run_env, wait_for

log = logging.getLogger(__name__)

RESULTS = REPO_ROOT / "results" / "cluster"
SEED = 11

REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
PARTITIONS = 2
HEALTH_TIMEOUT_S = 300.0  # a restarted node back in every ISR: 60-120 s at load 60-90 on 2 cores

# Two closed windows per symbol, the fault a quarter of the way in. A rolling restart is three node
# starts and health gates: 258 s on a 2-core machine at load 40-60, hence the fault's allowance.
SIZE = Size("cluster", per_symbol=600, windows=2, chunk=20, fault_at=8, burst=0, broker_outage_s=3.0,
            restart_delay_s=2.0, jobs=1, startup_timeout_s=480.0, settle_timeout_s=300.0,
            wall_budget_s=1200.0)  # fmt: skip

CASES = {
    case.name: case
    for case in (
        Case("cluster_leader_sigkill",
             "SIGKILL of the broker leading the raw topic's busiest partition mid-stream; restarted",
             "another replica leads the partition, the producer and the job go on"),
        Case("cluster_rolling_restart",
             "each broker stopped and started in turn, the next once the cluster is healthy again",
             "three restarts, the dashboard feed connected throughout"),
        Case("cluster_controller_sigkill",
             "SIGKILL of the active controller mid-stream; another voter takes over; restarted",
             "a new active controller, elected while the stream runs"),
    )
}  # fmt: skip


@dataclass
class ClusterFacts:
    """What a cluster case saw beyond the fault matrix's observation."""

    killed_node: int | None = None
    killed_partitions: list[int] = field(default_factory=list)
    restarted_nodes: list[int] = field(default_factory=list)
    controller_before: int | None = None
    controller_after: int | None = None
    new_leader_s: float | None = None  # kill -> every killed partition led by another node
    producer_stall_s: float | None = None  # kill -> the killed partitions grow again
    job_recovery_s: float | None = None  # kill -> the first aggregate of a trade taken after it
    feed_states: dict[str, int] = field(default_factory=dict)  # state -> samples, after connecting
    feed_windows_equal: bool | None = None  # the feed's closed windows equal the topic's


def shared_run(bootstrap: str, work: Path, logs: Path) -> Shared:
    """The data a run feeds: windows old enough to close as soon as the closer comes."""
    first_window = dataset.first_window_of_run(SIZE.windows, int(time.time() * 1000))
    data = dataset.build(SEED, SIZE.per_symbol, SIZE.windows, first_window)
    return Shared(bootstrap, data, SIZE, work, logs)


# A node's loss stalls only the partitions it led, while the other symbols' trades go on moving the
# watermark: a stall longer than the watermark sends the stalled symbol's trades to the late topic.
# Stalls measured 6.6-8.7 s on a quiet host against the default 10 s watermark, and over 10 s in a CI
# simulation (140 trades of one window late). These cases test exactly-once through the loss, so
# their watermark outlasts any stall; lateness has its own fault case (late_burst).
STALL_PROOF_WATERMARK = "1 minute"


class ClusterRun(CaseRun):
    def __init__(self, case: Case, shared: Shared, cluster: LocalCluster) -> None:
        super().__init__(case, shared)
        self.cluster = cluster
        self.bootstrap = cluster.bootstrap_servers
        self.facts = ClusterFacts()
        self.topics: list[str] = []
        self.watch: OffsetWatch | None = None
        self.feed: WindowFeed | None = None
        self._killed_at: float | None = None
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    def _pipeline_env(self, **overrides: str) -> dict[str, str]:
        env = (
            run_env(self.bootstrap, new_topic_names(), self.work / "checkpoints", SYMBOLS)
            | {"TELEMETRY_WATERMARK_DELAY": STALL_PROOF_WATERMARK}
            | overrides
        )
        settings = Settings.from_env(env)
        ensure_topics(settings, PARTITIONS, REPLICATION_FACTOR, MIN_INSYNC_REPLICAS)
        self.topics = [settings.raw_topic, settings.aggregates_topic, settings.dead_letter_topic,
                       settings.metrics_topic]  # fmt: skip
        wait_healthy(self.cluster, self.topics, HEALTH_TIMEOUT_S)
        self.watch = OffsetWatch(self.bootstrap, settings.raw_topic)
        self.feed = WindowFeed.from_settings(settings)
        self.feed.start()
        self._sampler = threading.Thread(target=self._sample_feed, name="feed-sampler", daemon=True)
        self._sampler.start()
        return env

    def _sample_feed(self) -> None:
        """Count the feed's states every 0.2 s from its first connection on."""
        assert self.feed is not None
        connected = False
        while not self._sampling.wait(0.2):
            now = self.feed.status().state
            connected = connected or now is FeedState.CONNECTED
            if connected:
                self.facts.feed_states[now.value] = self.facts.feed_states.get(now.value, 0) + 1

    # -- faults -----------------------------------------------------------------------------

    def _fault_cluster(self) -> None:
        assert self.settings is not None
        raw = self.settings.raw_topic
        wait_for(lambda: _quiet_end_offsets(self.bootstrap, raw) >= 2 * self.size.chunk,
                 60, "the first published trades", interval_s=0.5)  # fmt: skip
        fault = self.case.name.removeprefix("cluster_")
        {"leader_sigkill": self._kill_leader, "rolling_restart": self._roll,
         "controller_sigkill": self._kill_controller}[fault]()  # fmt: skip

    def _kill_leader(self) -> None:
        assert self.settings is not None and self.watch is not None
        raw = self.settings.raw_topic
        ends = self.watch.samples[-1][1]
        busiest = max(ends, key=lambda p: ends[p])
        led = leaders(self.bootstrap, raw)
        victim = led[busiest]
        self.facts.killed_node = victim
        self.facts.killed_partitions = sorted(p for p, node in led.items() if node == victim)
        self._kill(victim)
        wait_new_leader(self.bootstrap, raw, self.facts.killed_partitions, victim, HEALTH_TIMEOUT_S)
        assert self._killed_at is not None
        self.facts.new_leader_s = round(time.time() - self._killed_at, 2)
        time.sleep(self.size.broker_outage_s)  # trades keep coming to the two nodes left
        self._restart(victim)

    def _roll(self) -> None:
        for node in self.cluster.nodes:
            node.stop()  # SIGTERM: a controlled shutdown moves its leaders away first
            if self.fault_ms is None:
                self.fault_ms = int(time.time() * 1000)
                self.injected.set()
            self._restart(node.node_id)

    def _kill_controller(self) -> None:
        active = next(v.node_id for v in self.cluster.quorum() if v.leader)
        self.facts.killed_node = active
        # Read again, apart from the choice of victim, so a wrong choice shows in the verdict.
        self.facts.controller_before = next(v.node_id for v in self.cluster.quorum() if v.leader)
        self._kill(active)

        def elected() -> bool:
            try:
                voters = self.cluster.quorum()
            except Exception:  # no answer while the election runs
                return False
            return any(v.leader and v.node_id != active for v in voters)

        wait_for(elected, HEALTH_TIMEOUT_S, "a new active controller", interval_s=0.5)
        self.facts.controller_after = next(v.node_id for v in self.cluster.quorum() if v.leader)
        time.sleep(self.size.broker_outage_s)
        self._restart(active)

    def _kill(self, node_id: int) -> None:
        self._killed_at = time.time()
        self.cluster.node(node_id).kill()
        self.fault_ms = int(self._killed_at * 1000)
        log.info("%s: SIGKILL of node %d", self.case.name, node_id)
        self.injected.set()

    def _restart(self, node_id: int) -> None:
        self.cluster.node(node_id).start(timeout_s=HEALTH_TIMEOUT_S)
        wait_healthy(self.cluster, self.topics, HEALTH_TIMEOUT_S)
        self.facts.restarted_nodes.append(node_id)
        log.info("%s: node %d back and the cluster healthy", self.case.name, node_id)

    # -- ending and reading -----------------------------------------------------------------

    def _stop_processes(self) -> None:
        super()._stop_processes()
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(timeout=5)
        if self.watch is not None:
            self.watch.stop()

    def _collect(self, obs: Observation) -> None:
        for node in self.cluster.nodes:  # in case the case failed while one was down
            node.start(timeout_s=HEALTH_TIMEOUT_S)
        super()._collect(obs)
        if self.feed is not None:
            self._compare_feed(obs)
        if self._killed_at is not None and self.watch is not None and self.settings is not None:
            stall = self.watch.resumed_after(self._killed_at, self.facts.killed_partitions or [0, 1])
            self.facts.producer_stall_s = None if stall is None else round(stall, 2)
            self.facts.job_recovery_s = job_recovery_s(self.settings, self._killed_at)

    def _compare_feed(self, obs: Observation) -> None:
        assert self.feed is not None and obs.finals is not None
        feed, want = self.feed, obs.finals.windows

        def shown() -> dict[str, object]:
            return {w.key: window_values(w) for s in SYMBOLS for w in feed.windows(s) if w.is_final}

        feed.wait_for(lambda _: want.keys() <= shown().keys(), 30)
        self.facts.feed_windows_equal = shown() == want
        feed.close()


def job_recovery_s(settings: Settings, killed_at: float) -> float | None:
    """Seconds from the kill to the first aggregate row written for a trade the producer took after
    it (by the row's last trade id): the job read through the new leader and wrote through it."""
    bootstrap = settings.kafka_bootstrap_servers
    ingest = {}
    for record in read_all(bootstrap, settings.raw_topic, timeout_s=60):
        trade = Trade.from_json(record.value)
        ingest[(trade.symbol, trade.trade_id)] = trade.ingest_time
    kill_ms = killed_at * 1000
    written = []
    for record in read_all(bootstrap, settings.aggregates_topic, timeout_s=60):
        row = WindowStats.from_json(record.value)
        if ingest.get((row.symbol, row.last_trade_id), 0) >= kill_ms:
            written.append(record.timestamp)
    return round((min(written) - kill_ms) / 1000, 2) if written else None


def document(obs: Observation, facts: ClusterFacts) -> dict[str, object]:
    """What results/cluster/<case>.json keeps of one run."""
    return {
        "seconds": obs.seconds,
        "phases": obs.phases,
        "facts": dataclasses.asdict(facts),
        "ids": dataclasses.asdict(obs.ids) if obs.ids else None,
        "process_state": obs.process_state,
        "logs": obs.logs,
    }


def failures(case: str, obs: Observation, facts: ClusterFacts) -> list[str]:
    """Everything wrong with one cluster case (empty: it passed)."""
    found = [obs.error] if obs.error else []
    if obs.ids is None or obs.finals is None:
        return found or ["no observation"]
    ids, finals = obs.ids, obs.finals
    if ids.lost or ids.duplicated or ids.unexpected:
        found.append(f"raw topic: {ids.lost} lost, {ids.duplicated} doubled, {ids.unexpected} unexpected "
                     f"{list(ids.examples)[:4]}")  # fmt: skip
    if finals.conflicts or finals.bad_scale:
        found.append(f"final windows: conflicts {finals.conflicts[:4]}, VWAP scale {finals.bad_scale[:4]}")
    if obs.vs_exact:
        found.append(f"closed windows differ from the exact reference: {obs.vs_exact[:4]}")
    if obs.process_state != "alive":
        found.append(f"producer/job not alive throughout: {obs.process_state}")
    if facts.feed_windows_equal is not True:
        found.append("the dashboard feed's closed windows differ from the aggregates topic")
    if set(facts.feed_states) != {FeedState.CONNECTED.value}:
        found.append(f"the dashboard feed was not connected throughout: {facts.feed_states}")
    found.extend(_fault_missing(case, obs, facts))
    return found


def _fault_missing(case: str, obs: Observation, facts: ClusterFacts) -> list[str]:
    """Whether the fault happened the way the case says."""
    if not obs.evidence.spark_batches_after:
        return ["no Spark batch after the fault"]
    if case == "cluster_leader_sigkill" and facts.new_leader_s is None:
        return ["the killed partitions got no new leader"]
    if case == "cluster_rolling_restart" and sorted(facts.restarted_nodes) != [1, 2, 3]:
        return [f"restarted nodes {facts.restarted_nodes}, not all three"]
    if case == "cluster_controller_sigkill" and (
        facts.killed_node != facts.controller_before
        or facts.controller_after in (None, facts.controller_before)
    ):
        before, after = facts.controller_before, facts.controller_after
        return [f"killed {facts.killed_node}; active controller {before} -> {after}"]
    return []
