"""The results table, the JSON document and the machine it ran on."""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.faults import checks
from tests.faults.runner import Observation


@dataclass
class Row:
    """One case's line: the observation judged against the baseline."""

    obs: Observation
    vs_baseline: list[str] | None
    counted: bool
    counted_detail: str
    verdict: checks.Verdict


def judge(obs: Observation, baseline: Observation | None) -> Row:
    base_windows = baseline.finals.windows if baseline and baseline.finals else None
    case_windows = obs.finals.windows if obs.finals else None
    vs_baseline = checks.baseline_differences(case_windows, base_windows)
    counted, detail = checks.event_counted(obs.case, obs.evidence)
    if obs.ids is None or obs.finals is None or obs.letters is None or obs.conservation is None:
        failures = [obs.error or "no observation"]
        return Row(obs, vs_baseline, counted, detail, checks.Verdict(False, failures))
    verdict = checks.verdict(
        obs.ids,
        obs.finals,
        vs_baseline,
        obs.vs_exact,
        obs.letters,
        counted,
        obs.process_state,
        obs.evidence,
        obs.conservation,
    )
    if obs.error:
        verdict = checks.Verdict(False, [obs.error, *verdict.failures])
    return Row(obs, vs_baseline, counted, detail, verdict)


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


HEADER = ("case", "lost", "dup", "agg==base", "exact", "conserved", "counted", "process", "s", "result")


def table(rows: Sequence[Row]) -> str:
    lines = [HEADER]
    for row in rows:
        o = row.obs
        lines.append(
            (
                o.case,
                str(o.ids.lost) if o.ids else "?",
                str(o.ids.duplicated) if o.ids else "?",
                _yes(None if row.vs_baseline is None else not row.vs_baseline),
                _yes(None if o.finals is None else not o.vs_exact),
                _yes(None if o.conservation is None else o.conservation.holds),
                _yes(row.counted),
                o.process_state,
                f"{o.seconds:.0f}",
                "PASS" if row.verdict.passed else "FAIL",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines)


def failures(rows: Sequence[Row]) -> str:
    out = []
    for row in rows:
        if not row.verdict.passed:
            out.append(f"{row.obs.case}: " + "; ".join(row.verdict.failures) + f" (logs: {row.obs.logs})")
    return "\n".join(out)


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    mem_kb = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "load_average_at_start": [round(x, 2) for x in load_before],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def document(rows: Sequence[Row], size: Any, seconds: float, machine_info: dict[str, Any]) -> dict[str, Any]:
    cases = []
    for row in rows:
        o = row.obs
        cases.append(
            {
                "case": o.case,
                "passed": row.verdict.passed,
                "failures": row.verdict.failures,
                "seconds": o.seconds,
                "phases": o.phases,
                "ids": dataclasses.asdict(o.ids) if o.ids else None,
                "closed_windows": len(o.finals.windows) if o.finals else None,
                "final_rows_repeated": o.finals.repeats if o.finals else None,
                "aggregates_equal_baseline": None if row.vs_baseline is None else not row.vs_baseline,
                "baseline_differences": (row.vs_baseline or [])[:20],
                "exact": None if o.finals is None else not o.vs_exact,
                "exact_differences": o.vs_exact[:20],
                "dead_letters": dataclasses.asdict(o.letters) if o.letters else None,
                "conservation": dataclasses.asdict(o.conservation) if o.conservation else None,
                "event_counted": row.counted,
                "event_detail": row.counted_detail,
                "evidence": dataclasses.asdict(o.evidence),
                "process_state": o.process_state,
                "error": o.error,
                "logs": o.logs,
            }
        )
    return {
        "size": dataclasses.asdict(size),
        "seconds": round(seconds, 1),
        "passed": all(row.verdict.passed for row in rows),
        "machine": machine_info,
        "cases": cases,
    }
