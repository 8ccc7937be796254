"""`python -m tests.bench --size full|ci`: see tests/bench/__init__.py."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from app.common.settings import Settings
from app.localkafka.broker import LocalBroker
from tests.bench import checks, machine, reconcile, report
from tests.bench.catchup import run_catch_up
from tests.bench.dashboard import run_dashboard
from tests.bench.live import SYMBOL, run_live
from tests.bench.memory import RssSampler
from tests.bench.replay import run_replay
from tests.bench.sizes import SIZES, SLOWER_LATENCY, STREAM, STREAM_SYMBOLS
from tests.bench.stack import default_settings_env
from tests.support.pipeline import REPO_ROOT

log = logging.getLogger("tests.bench")
RESULTS = REPO_ROOT / "results" / "bench"


def _attempt(results: dict[str, Any], phase: str, run: Callable[..., Any], *args: Any) -> Any:
    """Run one phase; a broken phase (a process died, a bounded wait ran out) is a failure of the
    benchmark, recorded, and the other phases still run."""
    started = time.monotonic()
    log.info("phase %s", phase)
    try:
        return run(*args)
    except Exception as exc:
        log.error("phase %s failed: %s", phase, exc)
        results.setdefault("errors", {})[phase] = "".join(traceback.format_exception_only(exc))[-4000:]
        return None
    finally:
        results.setdefault("phase_seconds", {})[phase] = round(time.monotonic() - started, 1)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--no-browser", action="store_true", help="no headless Chromium on the dashboard")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) afterwards")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated phases: live,stream,replay,catch_up,dashboard,reconciliation",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # kafka-python narrates every fetch it cancels when read_all() closes a consumer.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    logging.getLogger("streamlit").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)  # stop every child through the finally blocks
    size = SIZES[args.size]
    only = set(filter(None, args.only.split(",")))

    def wanted(phase: str) -> bool:
        return not only or phase in only

    started = time.monotonic()
    results: dict[str, Any] = {
        "size": size.name,
        "machine": machine.describe(),
        "started_unix": int(time.time()),
        "settings_defaults": default_settings_env() | {"TELEMETRY_SYMBOLS": ",".join(Settings().symbols)},
        "sizes": asdict(size),
    }
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    log.info("work directory %s", work)
    samples: dict[str, Any] = {}
    broker = LocalBroker(data_dir=work / "kafka")
    try:
        broker = LocalBroker(data_dir=work / "kafka")
        broker.start(timeout_s=300)  # on a loaded machine the broker's JVM takes minutes to start
        if wanted("live"):
            sampler = RssSampler()
            browser = not args.no_browser
            default = _attempt(
                results, "latency_default", run_live, broker, work / "live-default", size, "default", {},
                sampler, browser,
            )  # fmt: skip
            results["memory"] = sampler.report()
            runs = [default]
            if size.compare_latency:
                # The same stack (dashboard and browser too), so the two runs compare like for like.
                slower_sampler = RssSampler()
                slower = _attempt(
                    results, "latency_poll_1s", run_live, broker, work / "live-slower", size,
                    "poll_1s", SLOWER_LATENCY, slower_sampler, browser,
                )  # fmt: skip
                if slower:
                    slower["memory"] = slower_sampler.report()
                runs.append(slower)
            if wanted("stream"):
                # The WebSocket source on the same stack as the REST run above (its ratio to it).
                for variant, symbols in (("stream", (SYMBOL,)), ("stream_10_symbols", STREAM_SYMBOLS)):
                    stream_sampler = RssSampler()
                    stream = _attempt(
                        results, f"latency_{variant}", run_live, broker, work / f"live-{variant}", size,
                        variant, STREAM, stream_sampler, browser, symbols,
                    )  # fmt: skip
                    if stream:
                        stream["memory"] = stream_sampler.report()
                    runs.append(stream)
            results["latency"] = {}
            for run in filter(None, runs):
                samples[run["variant"]] = run.pop("samples")
                results["latency"][run["variant"]] = run
        if wanted("replay"):
            replay_dir = work / "replay"
            replay = _attempt(
                results,
                "replay",
                run_replay,
                broker,
                replay_dir,
                size.replay_trades,
                size.replay_variants,
                size.replay_rounds,
            )
            if replay:
                results["replay"] = replay
        if wanted("catch_up"):
            results["catch_up"] = {}
            for budget in size.catch_up_budgets:
                catch_up_dir = work / f"catch-up-{budget}"
                run = _attempt(
                    results,
                    f"catch_up_{budget}",
                    run_catch_up,
                    broker,
                    catch_up_dir,
                    size.catch_up_backlog,
                    budget,
                )
                if run:
                    results["catch_up"][str(budget)] = run
        if wanted("dashboard"):
            dashboard = _attempt(
                results, "dashboard", run_dashboard, broker.bootstrap_servers, size.dashboard_reruns
            )
            if dashboard:
                results["dashboard"] = dashboard
        if wanted("reconciliation"):
            results["reconciliation"] = _attempt(
                results, "reconciliation", reconcile.run_reconciliation, broker, work / "reconciliation"
            )
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the children are stopped, report what ran
        log.warning("interrupted: %s", exc)
        results["interrupted"] = True
    finally:
        broker.stop()
        results["machine"]["load_average_end"] = machine.load_average()
        results["wall_seconds"] = round(time.monotonic() - started, 1)
        if args.keep:
            log.info("logs kept in %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    results["exactness"] = checks.exactness_total(results)
    failures = checks.correctness_failures(results) + reconcile.failures(results.get("reconciliation"))
    results["correctness_failures"] = failures
    rows = checks.figures(results) + reconcile.figures(results.get("reconciliation"))
    results["table"] = [row.__dict__ for row in rows]
    report.write_json(RESULTS / "bench.json", results)
    charted = report.latency_chart(RESULTS / "latency.png", samples)
    print()
    print(report.table(rows))
    print()
    load = f"{results['machine']['load_average_start']} -> {results['machine']['load_average_end']}"
    written = f"{RESULTS / 'bench.json'}" + (f", {RESULTS / 'latency.png'}" if charted else "")
    print(f"size {size.name}, {results['wall_seconds']} s, load average {load}; {written}")
    if results.get("interrupted"):
        print("\nINTERRUPTED: the figures above are partial")
        return 130
    if failures:
        print("\nCORRECTNESS FAILURES:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
