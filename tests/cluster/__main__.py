"""`python -m tests.cluster --runs 3`: the leader-loss case run again and again on one 3-node
cluster; prints p50 and max of the producer's stall, the job's recovery and the leader election,
writes results/cluster/leader_loss.json, and exits 1 if any run lost, doubled or changed anything."""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from app.localkafka.broker import LocalCluster
from tests.cluster.run import CASES, RESULTS, ClusterRun, document, failures, shared_run

CASE = "cluster_leader_sigkill"
FIGURES = ("producer_stall_s", "job_recovery_s", "new_leader_s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # see tests/faults/__main__.py
    started = time.monotonic()
    runs: list[dict[str, object]] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cluster-") as work:
        cluster = LocalCluster(data_dir=Path(work) / "cluster")
        cluster.start()
        try:
            for i in range(args.runs):
                shared = shared_run(cluster.bootstrap_servers, Path(work) / f"run{i + 1}", RESULTS / "logs")
                run = ClusterRun(CASES[CASE], shared, cluster)
                obs = run.run()
                runs.append(document(obs, run.facts))
                problems += [f"run {i + 1}: {f}" for f in failures(CASE, obs, run.facts)]
        finally:
            cluster.stop()
    summary: dict[str, dict[str, float | None]] = {}
    for name in FIGURES:
        values = [facts[name] for facts in (r["facts"] for r in runs) if isinstance(facts, dict)]
        known = [float(v) for v in values if v is not None]
        if len(known) < len(values):
            problems.append(f"{name} not measured in every run")
        summary[name] = {"p50": statistics.median(known) if known else None, "max": max(known, default=None)}
    doc = {"runs": runs, "summary": summary, "seconds": round(time.monotonic() - started, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "leader_loss.json").write_text(json.dumps(doc, indent=1))
    for name, figures in summary.items():
        print(f"{name:18} p50={figures['p50']}  max={figures['max']}  ({len(runs)} runs)")
    print(f"wall={doc['seconds']}s  written: {RESULTS / 'leader_loss.json'}")
    if problems:
        print("\n".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
