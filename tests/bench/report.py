"""Output of the benchmark: the table on stdout, results/bench/bench.json, results/bench/latency.png."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

from tests.bench.checks import Figure
from tests.bench.stats import cdf_points


def table(rows: Sequence[Figure]) -> str:
    def verdict(met: bool | None) -> str:
        return "" if met is None else ("met" if met else "NOT MET")

    cells = [("figure", "value", "target", "")] + [(r.name, r.value, r.target, verdict(r.met)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: Path, results: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def latency_chart(path: Path, samples: Mapping[str, Mapping[str, Mapping[str, Sequence[int]]]]) -> bool:
    """CDF of each (run, phase, measure)'s latencies, log x axis. False when there is nothing to draw."""
    points = [
        {
            "series": f"{variant} {phase} {measure.replace('_', ' ')}",
            "latency_ms": max(value, 1),
            "share": share,
        }
        for variant, phases in samples.items()
        for phase, measures in phases.items()
        for measure, values in measures.items()
        for value, share in cdf_points(values)
    ]
    if not points:
        return False
    frame = pd.DataFrame(points)
    lines = (
        alt.Chart(frame)
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X(
                "latency_ms:Q", scale=alt.Scale(type="log"), title="latency to the aggregate row (ms, log)"
            ),
            y=alt.Y("share:Q", title="share of trades", axis=alt.Axis(format="%")),
            color=alt.Color("series:N", title=None),
        )
    )
    targets = pd.DataFrame({"latency_ms": [1500, 3000], "label": ["p50 target", "p99 target"]})
    rules = alt.Chart(targets).mark_rule(strokeDash=[4, 4], color="gray").encode(x="latency_ms:Q")
    chart = (lines + rules).properties(
        width=720, height=380, title="Event-to-aggregate latency (trade time or ingest time -> row)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    chart.save(str(path))
    return True
