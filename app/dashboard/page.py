"""The Streamlit page: a static frame with the controls, and a fragment that redraws the live parts.

Run through app/dashboard/streamlit_app.py (`python -m app.dashboard`). The Kafka feed is one cached
resource per server process, shared by every browser session; the fragment only reads its in-memory
state, so a slow or missing broker never blocks a rerun.
"""

from __future__ import annotations

import logging
import time

import streamlit as st

from app.common.schema import now_ms
from app.common.settings import Settings
from app.dashboard import view
from app.dashboard.charts import chart_specs
from app.dashboard.feed import FeedState, WindowFeed
from app.dashboard.state import ReconciliationSummary

log = logging.getLogger(__name__)

# How long the first page load waits for the feed to read the topics up to now (or to fail).
FIRST_LOAD_WAIT_S = 8.0
SPANS_MINUTES = {"30 min": 30, "2 h": 120, "6 h": 360, "24 h": 1440}
DEFAULT_SPAN = "2 h"


def _release(feed: WindowFeed) -> None:
    feed.close()


@st.cache_resource(show_spinner="Connecting to Kafka…", on_release=_release)
def open_feed(settings: Settings) -> WindowFeed:
    """One feed per distinct configuration for the server's lifetime, polled by its own thread."""
    feed = WindowFeed.from_settings(settings)
    feed.start()
    return feed


def symbol_options(seen: list[str], configured: tuple[str, ...]) -> list[str]:
    """Configured symbols first (in their order), then any other symbol found in the topic."""
    return list(configured) + [s for s in seen if s not in configured]


def main() -> None:
    settings = Settings.from_env()
    # A no-op when a handler exists already; otherwise the feed's INFO lines would be lost.
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("app").setLevel(settings.log_level.upper())
    st.set_page_config(page_title="Bitcoin live VWAP", page_icon="📈", layout="wide")
    feed = open_feed(settings)
    feed.wait_until_ready(FIRST_LOAD_WAIT_S)

    st.title("Live Bitcoin trades: 1-minute OHLC and VWAP")
    left, right, _ = st.columns([2, 3, 5])
    symbol = left.selectbox("Symbol", symbol_options(feed.symbols(), settings.symbols), key="symbol")
    span = right.radio("Chart span", list(SPANS_MINUTES), index=1, horizontal=True, key="span")
    live = st.fragment(run_every=settings.dashboard_refresh_s)(live_panel)
    live(
        feed,
        symbol or settings.symbols[0],
        SPANS_MINUTES[span or DEFAULT_SPAN],
        settings.dashboard_history_hours,
    )


# A flood of mismatches (say, a lost partition) needs the first few and the count, not all of them.
MISMATCHES_SHOWN = 20


def reconciliation_panel(summary: ReconciliationSummary) -> None:
    """The final windows against the exchange's klines; any mismatch is an alarm."""
    headline = view.reconciliation_headline(summary)
    if summary.mismatches:
        lines = "\n".join(f"- {view.mismatch_text(r)}" for r in summary.mismatches[:MISMATCHES_SHOWN])
        st.error(
            f"Reconciliation alarm: {headline}. Trades were lost, doubled or changed between the "
            f"exchange and the aggregates in these minutes (pipeline vs exchange):\n{lines}",
            icon="🚨",
        )
    elif summary.checked or summary.unavailable:
        st.success(f"Reconciliation against the exchange's 1-minute klines: {headline}.")
    else:
        st.caption("Reconciliation: no final window checked against the exchange's klines yet.")


def live_panel(feed: WindowFeed, symbol: str, span_minutes: int, history_hours: float) -> None:
    """Everything that changes with new data; rerun by Streamlit every `dashboard_refresh_s`."""
    started = time.perf_counter()
    now = now_ms()
    status = feed.status()
    windows = feed.windows(symbol)
    health = feed.health()

    if status.state is FeedState.UNREACHABLE:
        st.error(f"{status.message}. Retrying every few seconds; figures below may be stale.", icon="🔌")
    elif status.state is FeedState.WAITING_FOR_TOPIC:
        st.warning(f"Kafka is up but the pipeline has not created its topics yet ({status.message}).")
    elif status.state is FeedState.CONNECTING:
        st.info("Connecting to Kafka…")

    figures = view.kpis(windows, now)
    if figures is None:
        st.info(f"No data for {symbol} yet: waiting for the first 1-minute window from the pipeline.")
    else:
        price, vwap, spread, rate = st.columns(4)
        price.metric("Last price", view.format_price(figures.last_price))
        vwap.metric(
            "VWAP, current window",
            f"{figures.vwap:,}",
            help="Spark's volume-weighted average price of the newest 1-minute window, 8 places.",
        )
        spread.metric("Price vs VWAP", view.format_bps(figures.price_vs_vwap_bps))
        rate.metric("Trades/s", str(figures.trades_per_s), help="Trades in the last completed minute / 60.")
        frame = view.candles_frame(view.recent(windows, span_minutes))
        price_spec, volume_spec = chart_specs(symbol, frame)
        st.vega_lite_chart(spec=price_spec, width="stretch")
        st.vega_lite_chart(spec=volume_spec, width="stretch")

    fresh, late, dead, accounted, producer, kafka = st.columns(6)
    fresh.metric(
        "Data freshness", view.format_age(view.freshness_s(windows, now)), help="Now - last trade time."
    )
    late.metric(
        "Late trades",
        f"{health.late.count:,}",
        help=(
            "Trades that arrived after their window was final (each one is on the late-trades topic), "
            f"counted by the job: quote volume {health.late.quote_volume:,} (left out of the windows)."
        ),
    )
    dead.metric("Dead letters", "n/a" if health.dead_letters is None else f"{health.dead_letters:,}")
    books = health.accounting
    accounted.metric(
        "Raw records accounted",
        view.format_share(books.share),
        help=(
            f"Of the {books.records:,} raw records the job has read, {books.accounted:,} are in a final "
            f"window, late, dead letters or dropped as duplicates; {books.open_trades:,} are in windows "
            "still open."
        ),
    )
    if health.producer is None:
        producer.metric("Producer errors", "n/a", help="No producer report yet.")
    else:
        report = health.producer
        producer.metric(
            "Producer errors",
            f"{report.errors:,}",
            help=(
                f"HTTP {dict(report.http_errors)}, 429: {report.rate_limited_429}, 418: {report.banned_418}; "
                f"gaps backfilled {report.gaps_backfilled}, unrecoverable {report.unrecoverable_gaps}; "
                f"weight {report.used_weight_1m}/{report.budget_per_minute} per minute"
            ),
        )
    kafka.metric("Kafka", status.state.value.replace("_", " "))
    reconciliation_panel(feed.reconciliation())
    took_ms = (time.perf_counter() - started) * 1000
    st.caption(
        f"{len(windows)} windows of {symbol} in memory · newest "
        f"{'final' if figures and figures.is_final else 'open'} · rendered in {took_ms:.0f} ms"
    )
    log.debug("live panel for %s rendered in %.1f ms", symbol, took_ms)
