"""The pipeline on a 3-node KRaft cluster (RF 3, min.insync.replicas 2) through three faults: the raw
topic's leader SIGKILLed, a rolling restart of every node, the active controller SIGKILLed. Each must
lose and double nothing, close every window exactly as the reference computes it, keep the producer
and the job alive without a restart, and keep the dashboard's feed connected and equal to the topic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.localkafka.broker import LocalCluster
from tests.cluster.run import CASES, RESULTS, SIZE, ClusterRun, document, failures, shared_run

# Bounded: every wait in a case has its deadline, and a case that overruns them all is stopped here.
pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.timeout(SIZE.wall_budget_s)]


@pytest.mark.parametrize("case", list(CASES))
def test_cluster_fault(case: str, kafka_cluster: LocalCluster, tmp_path: Path) -> None:
    shared = shared_run(kafka_cluster.bootstrap_servers, tmp_path, RESULTS / "logs")
    run = ClusterRun(CASES[case], shared, kafka_cluster)
    obs = run.run()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{case}.json").write_text(json.dumps(document(obs, run.facts), indent=1))
    assert failures(case, obs, run.facts) == [], f"logs: {obs.logs}"
