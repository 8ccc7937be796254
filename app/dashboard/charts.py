"""Altair chart specs for the dashboard (pure: no Streamlit, no Kafka).

Building and validating an Altair chart costs far more than the data it shows (hundreds of ms for
three layers), while the chart's shape only depends on the symbol and the candle width. So the spec is
built once per shape around a named dataset, and each refresh only puts the new frame under that name
(Streamlit ships `datasets` entries to the browser as Arrow, as it does for its own Altair charts).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import altair as alt
import pandas as pd

DATASET = "candles"
RISING = "#26a69a"
FALLING = "#ef5350"
VWAP_COLOUR = "#ff9800"
PLOT_WIDTH_PX = 1100
Y_AXIS_PX = 64  # the same room for both charts' y axes lines their time axes up


def candle_width_px(candles: int) -> float:
    """Candle bodies on a continuous time axis need an explicit width; readable, never overlapping."""
    return round(max(1.0, min(12.0, 0.7 * PLOT_WIDTH_PX / max(candles, 1))), 1)


def _time_axis() -> alt.X:
    return alt.X(
        "time:T",
        title=None,
        scale=alt.Scale(type="utc"),
        axis=alt.Axis(format="%H:%M", labelOverlap=True),
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


def price_chart(symbol: str, body_px: float) -> alt.LayerChart:
    """Candlesticks (wick = low..high, body = open..close) with the VWAP line on top.

    Reads the columns of `view.candles_frame` from the dataset named `DATASET`.
    """
    base = alt.Chart(alt.NamedData(name=DATASET)).encode(x=_time_axis())
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


def volume_chart(body_px: float) -> alt.Chart:
    """Base volume per window, coloured like its candle, on the same time axis as `price_chart`."""
    chart: alt.Chart = (
        alt.Chart(alt.NamedData(name=DATASET))
        .mark_bar(size=body_px)
        .encode(
            x=_time_axis(),
            y=alt.Y("volume:Q", title="volume", axis=alt.Axis(minExtent=Y_AXIS_PX)),
            color=_COLOUR,
            tooltip=_tooltip(),
        )
        .properties(height=150)
    )
    return chart


@functools.lru_cache(maxsize=64)
def _specs(symbol: str, body_px: float) -> tuple[dict[str, Any], dict[str, Any]]:
    specs = (price_chart(symbol, body_px).to_dict(), volume_chart(body_px).to_dict())
    for spec in specs:
        # Altair's default theme sizes views at 300 px; Streamlit sizes the chart to its container.
        spec.pop("config", None)
    return specs


def chart_specs(symbol: str, frame: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any]]:
    """Vega-Lite specs of the price and volume charts for `frame` (a `view.candles_frame`), data included.

    Two charts rather than one vconcat: Vega-Lite can only fit single and layered views to the
    container's width. Equal y-axis extents keep their time axes aligned.
    """
    specs = copy.deepcopy(_specs(symbol, candle_width_px(len(frame))))
    for spec in specs:
        spec["datasets"] = {DATASET: frame}
    return specs
