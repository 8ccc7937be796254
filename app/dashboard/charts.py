"""Altair chart specs for the dashboard (pure: no Streamlit, no Kafka).

Building and validating an Altair chart costs far more than the data it shows (hundreds of ms for
three layers), while the chart's shape only depends on the symbol and the candle width. So the spec is
built once per shape around a named dataset, and each refresh only puts the new frame under that name
(Streamlit ships `datasets` entries to the browser as Arrow, as it does for its own Altair charts).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import altair as alt
import pandas as pd

DATASET = "candles"
RISING = "#26a69a"
FALLING = "#ef5350"
VWAP_COLOUR = "#ff9800"
PLOT_WIDTH_PX = 1100
Y_AXIS_PX = 64  # the same room for both charts' y axes lines their time axes up
# About 90 px per "HH:MM" label across the plot: more ticks than this would crowd or repeat labels.
MAX_TIME_TICKS = 12
MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS
TimeUnit = Literal["minute", "hour", "day"]
_UNIT_MS: dict[TimeUnit, int] = {"minute": MINUTE_MS, "hour": 60 * MINUTE_MS, "day": DAY_MS}


@dataclass(frozen=True)
class TimeTicks:
    """Ticks every `step` whole UTC minutes, hours or days (multiples of the step since the epoch)."""

    interval: TimeUnit
    step: int
    label_format: str

    @property
    def step_ms(self) -> int:
        return self.step * _UNIT_MS[self.interval]

    def values(self, first_ms: int, end_ms: int) -> list[int]:
        """The tick times in [first_ms, end_ms], in ms: every whole step, so labels never repeat."""
        first_tick = -(-first_ms // self.step_ms) * self.step_ms
        return list(range(first_tick, end_ms + 1, self.step_ms))


# Steps that divide an hour or a day evenly, so ticks land on round clock times.
_TICK_STEPS: tuple[tuple[TimeUnit, int], ...] = (
    ("minute", 1),
    ("minute", 2),
    ("minute", 5),
    ("minute", 10),
    ("minute", 15),
    ("minute", 30),
    ("hour", 1),
    ("hour", 2),
    ("hour", 3),
    ("hour", 6),
    ("hour", 12),
    ("day", 1),
    ("day", 2),
    ("day", 7),
)


def time_ticks(span_ms: int) -> TimeTicks:
    """The finest whole-minute, -hour or -day step that puts fewer than `MAX_TIME_TICKS` ticks on the span.

    Left to itself, Vega picks 10- or 30-second ticks for a few minutes of data, and an "%H:%M" label
    then repeats the same minute several times.
    """
    label_format = "%b %d %H:%M" if span_ms > DAY_MS else "%H:%M"
    for interval, step in _TICK_STEPS:
        if span_ms // (step * _UNIT_MS[interval]) < MAX_TIME_TICKS:
            return TimeTicks(interval, step, label_format)
    return TimeTicks("day", 7, label_format)


def candle_width_px(candles: int) -> float:
    """Candle bodies on a continuous time axis need an explicit width; readable, never overlapping."""
    return round(max(1.0, min(12.0, 0.7 * PLOT_WIDTH_PX / max(candles, 1))), 1)


def _time_axis(label_format: str) -> alt.X:
    # The tick values are set per frame by `chart_specs` (see `_set_time_ticks`).
    return alt.X(
        "time:T",
        title=None,
        scale=alt.Scale(type="utc"),
        axis=alt.Axis(format=label_format, labelOverlap=True),
    )


def _tooltip() -> list[alt.Tooltip]:
    return [
        alt.Tooltip("time:T", title="window start (UTC)", format="%Y-%m-%d %H:%M"),
        alt.Tooltip("ohlc:N", title="O / H / L / C"),
        alt.Tooltip("vwap_text:N", title="VWAP"),
        alt.Tooltip("volume_text:N", title="volume"),
        alt.Tooltip("trades:Q", title="trades"),
        alt.Tooltip("final:N", title="final"),
    ]


_COLOUR = alt.condition("datum.rising", alt.value(RISING), alt.value(FALLING))


def price_chart(symbol: str, body_px: float, label_format: str) -> alt.LayerChart:
    """Candlesticks (wick = low..high, body = open..close) with the VWAP line on top.

    Reads the columns of `view.candles_frame` from the dataset named `DATASET`.
    """
    base = alt.Chart(alt.NamedData(name=DATASET)).encode(x=_time_axis(label_format))
    y_axis = alt.Axis(minExtent=Y_AXIS_PX)
    wicks = base.mark_rule().encode(
        y=alt.Y("low:Q", title=f"{symbol} price", scale=alt.Scale(zero=False), axis=y_axis),
        y2="high:Q",
        color=_COLOUR,
    )
    bodies = base.mark_bar(size=body_px).encode(y="open:Q", y2="close:Q", color=_COLOUR, tooltip=_tooltip())
    vwap = base.mark_line(color=VWAP_COLOUR, strokeWidth=2).encode(y="vwap:Q", tooltip=_tooltip())
    chart = alt.layer(wicks, bodies, vwap).properties(height=380, title="1-minute OHLC (UTC), VWAP in orange")
    assert isinstance(chart, alt.LayerChart)
    return chart


def volume_chart(body_px: float, label_format: str) -> alt.Chart:
    """Base volume per window, coloured like its candle, on the same time axis as `price_chart`."""
    chart: alt.Chart = (
        alt.Chart(alt.NamedData(name=DATASET))
        .mark_bar(size=body_px)
        .encode(
            x=_time_axis(label_format),
            y=alt.Y("volume:Q", title="volume", axis=alt.Axis(minExtent=Y_AXIS_PX)),
            color=_COLOUR,
            tooltip=_tooltip(),
        )
        .properties(height=150)
    )
    return chart


@functools.lru_cache(maxsize=64)
def _specs(symbol: str, body_px: float, label_format: str) -> tuple[dict[str, Any], dict[str, Any]]:
    specs = (
        price_chart(symbol, body_px, label_format).to_dict(),
        volume_chart(body_px, label_format).to_dict(),
    )
    for spec in specs:
        # Altair's default theme sizes views at 300 px; Streamlit sizes the chart to its container.
        spec.pop("config", None)
    return specs


def _vega_datetime(ms: int) -> dict[str, int | bool]:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return {
        "utc": True,
        "year": moment.year,
        "month": moment.month,
        "date": moment.day,
        "hours": moment.hour,
        "minutes": moment.minute,
    }


def _set_time_ticks(spec: dict[str, Any], values: list[int]) -> None:
    # Vega-Lite DateTime objects, which every Vega-Lite version reads as UTC instants; Streamlit's
    # renderer drew no ticks at all from plain epoch milliseconds.
    datetimes = [_vega_datetime(ms) for ms in values]
    for view in [spec, *spec.get("layer", [])]:
        x = view.get("encoding", {}).get("x")
        if x is not None:
            x["axis"]["values"] = datetimes


def chart_specs(symbol: str, frame: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any]]:
    """Vega-Lite specs of the price and volume charts for `frame` (a `view.candles_frame`), data included.

    Two charts rather than one vconcat: Vega-Lite can only fit single and layered views to the
    container's width. Equal y-axis extents keep their time axes aligned.
    """
    first_ms = int(frame["time"].min().timestamp() * 1000) if len(frame) else 0
    end_ms = int(frame["time"].max().timestamp() * 1000) + MINUTE_MS if len(frame) else 0
    ticks = time_ticks(end_ms - first_ms)
    specs = copy.deepcopy(_specs(symbol, candle_width_px(len(frame)), ticks.label_format))
    values = ticks.values(first_ms, end_ms)
    for spec in specs:
        _set_time_ticks(spec, values)
        spec["datasets"] = {DATASET: frame}
    return specs
