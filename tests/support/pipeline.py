"""Running the pipeline's own processes for end-to-end tests, benchmarks and the fault matrix:
fresh topics per run, `python -m app.<part>` (or installed console script) children in their own
process groups (so a SIGKILL or an RSS reading covers the JVM a Spark driver starts), bounded waits,
and an exact reference for closed windows that shares no code with app.core."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from app.core.windows import WINDOW_MS
from tests.support.exact import half_even_8
from tests.support.kafka import create_topics, unique_topic

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def pipeline_env(
    bootstrap: str, checkpoint_dir: Path, symbols: Iterable[str], partitions: int = 2, **overrides: str
) -> dict[str, str]:
    """The environment of one pipeline run: new topics on `bootstrap`, loopback everywhere.
    The raw topic never expires records, so trades with old times (replays, reprocessing) stay."""
    topics = new_topic_names()
    create_topics(bootstrap, [topics["TELEMETRY_RAW_TOPIC"]], partitions, {"retention.ms": "-1"})
    create_topics(bootstrap, [topics["TELEMETRY_AGGREGATES_TOPIC"]], partitions)
    singles = (
        "TELEMETRY_DEAD_LETTER_TOPIC",
        "TELEMETRY_LATE_TRADES_TOPIC",
        "TELEMETRY_METRICS_TOPIC",
        "TELEMETRY_RECONCILIATION_TOPIC",
    )
    create_topics(bootstrap, [topics[name] for name in singles])
    return run_env(bootstrap, topics, checkpoint_dir, symbols) | overrides


def new_topic_names() -> dict[str, str]:
    """Fresh names for the pipeline's topics, as the settings' environment variables."""
    return {
        "TELEMETRY_RAW_TOPIC": unique_topic("raw"),
        "TELEMETRY_AGGREGATES_TOPIC": unique_topic("agg"),
        "TELEMETRY_DEAD_LETTER_TOPIC": unique_topic("dlq"),
        "TELEMETRY_LATE_TRADES_TOPIC": unique_topic("late"),
        "TELEMETRY_METRICS_TOPIC": unique_topic("metrics"),
        "TELEMETRY_RECONCILIATION_TOPIC": unique_topic("recon"),
    }


def run_env(
    bootstrap: str, topics: Mapping[str, str], checkpoint_dir: Path, symbols: Iterable[str]
) -> dict[str, str]:
    """The environment of one pipeline run on topics that exist already."""
    return process_env(bootstrap, checkpoint_dir, symbols) | dict(topics)


def process_env(bootstrap: str, checkpoint_dir: Path, symbols: Iterable[str]) -> dict[str, str]:
    """The environment of the pipeline's processes, topics aside: loopback everywhere."""
    return dict(os.environ) | {
        "TELEMETRY_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TELEMETRY_SYMBOLS": ",".join(symbols),
        "TELEMETRY_SOURCE": "binance",
        "TELEMETRY_POLL_INTERVAL_S": "0.2",
        "TELEMETRY_WEIGHT_BUDGET_PER_MINUTE": "6000",  # the fake exchange is ours to load
        "TELEMETRY_HTTP_TIMEOUT_S": "5",
        "TELEMETRY_CHECKPOINT_DIR": str(checkpoint_dir),
        "TELEMETRY_WATERMARK_DELAY": "10 seconds",
        "TELEMETRY_TRIGGER_INTERVAL": "500 milliseconds",
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


class Process:
    """A pipeline process run as `python -m module` from the checkout, or as the installed console
    script `program` of that module from `cwd`, in its own process group, its output kept for the
    failure report."""

    def __init__(
        self,
        module: str,
        env: Mapping[str, str],
        log_path: Path,
        *args: str,
        program: Path | None = None,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.module = module
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            [str(program), *args] if program else [sys.executable, "-m", module, *args],
            env=dict(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> int:
        """SIGKILL the whole group (a Spark driver's JVM too); returns the exit status (-9)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        status = self.popen.wait(timeout=30)
        self._log.close()
        return status

    def stop(self) -> None:
        """Stop as the systemd units do (KillMode=mixed): SIGTERM to this process alone, which stops
        its children itself (a Spark driver its JVM), then SIGKILL to whatever of its group is left."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self._log.close()

    def rss_bytes(self) -> int:
        """Resident memory of the process and every descendant (0 once it has exited)."""
        return tree_rss_bytes(self.popen.pid)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def stop_group(popen: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the process group `popen` leads, SIGKILL it if still there after `timeout_s`."""
    if popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()


def tree_rss_bytes(root: int) -> int:
    """Resident memory of a process and every descendant (0 once they have exited), each address
    space counted once. The JVM starts a command (Hadoop's `chmod` of each checkpoint file) with
    vfork: until it execs, the child shares the JVM's memory and reports all of it as its own, which
    read as the job's memory doubling for an instant (measured: 2.07 GiB for a 0.72 GiB JVM)."""
    parent_of = _descendants_with_parents(root)
    return sum(
        _rss(pid) for pid, parent in parent_of.items() if parent is None or not _same_memory(pid, parent)
    )


# kcmp(2) says whether two processes share one address space; its number differs per architecture.
_SYS_KCMP = {"x86_64": 312, "aarch64": 272}.get(platform.machine())
_KCMP_VM = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _same_memory(pid: int, other: int) -> bool:
    if _SYS_KCMP is None:
        return False
    return int(_libc.syscall(_SYS_KCMP, pid, other, _KCMP_VM, 0, 0)) == 0


def _descendants_with_parents(root: int) -> dict[int, int | None]:
    """`root` and every descendant, each with its parent (None for `root`)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                # The command name may hold spaces and parentheses: the fields follow the last ')'.
                parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found: dict[int, int | None] = {root: None}
    todo = [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            found[child] = pid
            todo.append(child)
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def wait_for(
    condition: Callable[[], object],
    timeout_s: float,
    what: str,
    processes: Iterable[Process] = (),
    interval_s: float = 1.0,
) -> None:
    """Poll `condition` every `interval_s`; fail with the processes' logs if one dies or time runs out."""
    watched = list(processes)
    deadline = time.monotonic() + timeout_s
    while not condition():
        for process in watched:
            assert process.alive(), f"{process.log_path.name} died:\n{process.tail()}"
        if time.monotonic() > deadline:
            details = "\n\n".join(f"== {p.log_path.name}\n{p.tail()}" for p in watched)
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{details}")
        time.sleep(interval_s)


def answers_200(url: str) -> bool:
    """Whether an HTTP GET of `url` answers 200 now (a refused or dropped connection is a no)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def expected_windows(symbol: str, trades: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Closed windows of Binance-shaped trades, keyed like WindowStats.key. Independent of app.core:
    exact rationals, plain sorting."""
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for t in trades:
        groups.setdefault(t["time"] - t["time"] % WINDOW_MS, []).append(t)
    result = {}
    for start, group in groups.items():
        by_time = sorted(group, key=lambda t: (t["time"], t["id"]))
        notional = sum((Fraction(t["price"]) * Fraction(t["qty"]) for t in group), Fraction(0))
        volume = sum((Fraction(t["qty"]) for t in group), Fraction(0))
        result[f"{symbol}|{start}"] = {
            "open": Decimal(by_time[0]["price"]),
            "close": Decimal(by_time[-1]["price"]),
            "high": max(Decimal(t["price"]) for t in group),
            "low": min(Decimal(t["price"]) for t in group),
            "vwap": half_even_8(notional / volume),
            "quote_volume": notional,
            "base_volume": volume,
            "trade_count": len(group),
            "first_trade_id": min(t["id"] for t in group),
            "last_trade_id": max(t["id"] for t in group),
        }
    return result
