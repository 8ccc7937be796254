"""`python -m tests.faults --size full|ci`: run the fault matrix, print the table, write
results/faults/faults.json; exit 1 if any case lost or doubled a trade, changed a closed window,
did not count its fault, or left a process dead."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.localkafka.broker import LocalBroker
from tests.faults import dataset, report
from tests.faults.cases import CASE_NAMES, CASES, SIZES, Case
from tests.faults.runner import CaseRun, Observation, Shared
from tests.support.pipeline import REPO_ROOT

RESULTS = REPO_ROOT / "results" / "faults"
SEED = 11

log = logging.getLogger("tests.faults")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--cases", default="", help="comma-separated subset (baseline is always run)")
    parser.add_argument("--jobs", type=int, default=0, help="cases run at once (default: the size's)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where faults.json and logs/ go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # kafka-python logs its fetcher's housekeeping (seeks, cancelled fetches) as warnings and errors;
    # the matrix's own checks judge what reached each topic.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    size = SIZES[args.size]
    wanted = {"baseline", *filter(None, args.cases.split(","))} if args.cases else set(CASE_NAMES)
    unknown = wanted - set(CASE_NAMES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {CASE_NAMES}")
    cases = [case for case in CASES if case.name in wanted]
    jobs = args.jobs or size.jobs

    load_before = os.getloadavg()
    started = time.monotonic()
    first_window = dataset.first_window_of_run(size.windows, int(time.time() * 1000))
    data = dataset.build(SEED, size.per_symbol, size.windows, first_window)
    results = args.results
    results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="faults-") as work:
        broker = LocalBroker(data_dir=Path(work) / "kafka")
        broker.start(timeout_s=120)
        try:
            shared = Shared(broker.bootstrap_servers, data, size, Path(work), results / "logs")
            with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="case") as pool:
                observations = list(pool.map(lambda case: _run(case, shared), cases))
        finally:
            broker.stop()
    seconds = time.monotonic() - started

    by_name = {o.case: o for o in observations}
    rows = [report.judge(o, by_name.get("baseline")) for o in observations]
    doc = report.document(rows, size, seconds, report.machine(load_before))
    doc["first_window_ms"] = first_window
    doc["jobs"] = jobs
    (results / "faults.json").write_text(json.dumps(doc, indent=2, default=str))

    print(report.table(rows))
    print(
        f"\nsize={size.name} cases={len(rows)} jobs={jobs} wall={seconds:.0f}s "
        f"(budget {size.wall_budget_s:.0f}s on a quiet 2-core machine) cores={doc['machine']['cores']} "
        f"load={doc['machine']['load_average_at_start']} -> {doc['machine']['load_average_at_end']}"
    )
    problems = report.failures(rows)
    if problems:
        print("\n" + problems)
    if seconds > size.wall_budget_s:
        print(f"\nnote: {seconds:.0f}s is over the {size.wall_budget_s:.0f}s budget (see the load above)")
    print(f"\nwritten: {results / 'faults.json'}")
    return 0 if doc["passed"] else 1


def _run(case: Case, shared: Shared) -> Observation:
    log.info("case %s: start (%s)", case.name, case.injects)
    obs = CaseRun(case, shared).run()
    log.info("case %s: done in %.0fs%s", case.name, obs.seconds, f" ({obs.error})" if obs.error else "")
    return obs


if __name__ == "__main__":
    sys.exit(main())
