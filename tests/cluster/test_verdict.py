"""The cluster cases' verdict and the quorum parsing, on plain data (no Kafka, no Spark)."""

from __future__ import annotations

import dataclasses

import pytest

from app.localkafka.broker import parse_quorum_replication
from tests.cluster.run import ClusterFacts, failures
from tests.faults import checks
from tests.faults.runner import Observation

# `kafka-metadata-quorum describe --replication` of a LocalCluster, with an observer added.
REPLICATION = """\
NodeId\tDirectoryId           \tLogEndOffset\tLag\tLastFetchTimestamp\tLastCaughtUpTimestamp\tStatus  \t
1     \tAAAAAAAAAAAAAAAAAAAAAA\t25          \t0  \t1796157230825     \t1796157230825        \tLeader  \t
2     \tAAAAAAAAAAAAAAAAAAAAAA\t25          \t0  \t1796157230537     \t1796157230537        \tFollower\t
3     \tAAAAAAAAAAAAAAAAAAAAAA\t19          \t6  \t1796157230530     \t1796157230100        \tFollower\t
4     \tAAAAAAAAAAAAAAAAAAAAAA\t25          \t0  \t1796157230530     \t1796157230530        \tObserver\t
"""


def test_quorum_replication_lists_the_voters_with_their_lag() -> None:
    voters = parse_quorum_replication(REPLICATION)
    assert [(v.node_id, v.lag, v.leader) for v in voters] == [(1, 0, True), (2, 0, False), (3, 6, False)]


def _clean() -> tuple[Observation, ClusterFacts]:
    obs = Observation(
        "cluster_controller_sigkill",
        ids=checks.IdReport(served=10, in_raw=10, lost=0, duplicated=0, unexpected=0),
        finals=checks.FinalWindows({}, (), 0, ()),
        process_state="alive",
    )
    obs.evidence.spark_batches_after = {"live": 3}
    facts = ClusterFacts(killed_node=1, controller_before=1, controller_after=2, restarted_nodes=[1],
                         feed_states={"connected": 100}, feed_windows_equal=True)  # fmt: skip
    return obs, facts


def test_a_clean_case_passes() -> None:
    obs, facts = _clean()
    assert failures(obs.case, obs, facts) == []


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ({"ids": checks.IdReport(10, 9, 1, 0, 0)}, "1 lost"),
        ({"ids": checks.IdReport(10, 11, 0, 1, 0)}, "1 doubled"),
        ({"vs_exact": ["BTCUSDT|0: missing"]}, "exact reference"),
        ({"process_state": "restarted"}, "not alive"),
    ],
)
def test_each_observation_defect_fails(defect: dict[str, object], message: str) -> None:
    obs, facts = _clean()
    assert message in " ".join(failures(obs.case, dataclasses.replace(obs, **defect), facts))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ({"feed_states": {"connected": 90, "unreachable": 10}}, "not connected throughout"),
        ({"feed_windows_equal": False}, "feed's closed windows differ"),
        ({"controller_after": 1}, "active controller 1 -> 1"),
        ({"killed_node": 2}, "killed 2; active controller 1 -> 2"),
    ],
)
def test_each_cluster_defect_fails(defect: dict[str, object], message: str) -> None:
    obs, facts = _clean()
    assert message in " ".join(failures(obs.case, obs, dataclasses.replace(facts, **defect)))  # type: ignore[arg-type]
