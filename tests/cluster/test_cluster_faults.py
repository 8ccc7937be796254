"""The pipeline on a 3-node KRaft cluster (RF 3, min.insync.replicas 2) through three faults: the raw
topic's leader SIGKILLed, a rolling restart of every node, the active controller SIGKILLed. Each must
lose and double nothing, close every window exactly as the reference computes it, keep the producer
and the job alive without a restart, and keep the dashboard's feed connected and equal to the topic."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app.core.windows import WINDOW_MS, window_start
from app.localkafka.broker import LocalCluster
from tests.cluster.run import CASES, SIZE, ClusterRun, document, failures
from tests.faults import dataset
from tests.faults.runner import Shared
from tests.support.pipeline import REPO_ROOT

RESULTS = REPO_ROOT / "results" / "cluster"
SEED = 11

pytestmark = pytest.mark.e2e


def shared_run(bootstrap: str, work: Path) -> Shared:
    """The data every case of a run feeds: windows old enough to close as soon as the closer comes."""
    first_window = window_start(int(time.time() * 1000)) - (SIZE.windows + 3) * WINDOW_MS
    data = dataset.build(SEED, SIZE.per_symbol, SIZE.windows, first_window)
    return Shared(bootstrap, data, SIZE, work, RESULTS / "logs")


@pytest.mark.parametrize("case", list(CASES))
def test_cluster_fault(case: str, kafka_cluster: LocalCluster, tmp_path: Path) -> None:
    run = ClusterRun(CASES[case], shared_run(kafka_cluster.bootstrap_servers, tmp_path), kafka_cluster)
    obs = run.run()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{case}.json").write_text(json.dumps(document(obs, run.facts), indent=1))
    assert failures(case, obs, run.facts) == [], f"logs: {obs.logs}"
