"""Live source: polls the Binance REST API v3 for each symbol as `Schedule` decides.

This module only does the I/O: it asks the schedule (app/producer/schedule.py, where every rule of
back-fill, event-time hold, pauses, back-off and the weight budget lives) what to do, sends that
request, hands the answer back, and counts what the schedule reports in the producer's metrics.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from app.common.schema import Trade
from app.common.schema import now_ms as wall_clock_ms
from app.common.settings import Settings, event_time_lead_ms
from app.producer import schedule
from app.producer.metrics import ProducerMetrics
from app.producer.schedule import HISTORICAL_TRADES_PATH, PAGE_SIZE, REQUEST_WEIGHT, TRADES_PATH

__all__ = ["HISTORICAL_TRADES_PATH", "PAGE_SIZE", "REQUEST_WEIGHT", "TRADES_PATH", "BinanceSource"]

log = logging.getLogger(__name__)

# The run loop publishes metrics and checks for shutdown at least this often.
MAX_BLOCK_S = 1.0


def http_session() -> requests.Session:
    """A session that retries only failed connection set-ups: no request reached Binance, so
    no weight was spent. Anything that may have been answered goes back through the budget."""
    retry = Retry(
        total=3,
        connect=3,
        # False, not 0: re-raise the read timeout itself, which requests reports as a Timeout.
        read=False,
        status=0,
        other=0,
        redirect=0,
        backoff_factor=0.2,
        backoff_jitter=0.2,
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=2)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "crypto-telemetry-producer/1"
    return session


def fetch(
    session: requests.Session, base_url: str, timeout_s: float, request: schedule.Request
) -> schedule.Answer | schedule.Failure:
    """Send one GET the schedule decided on; every way it can fail becomes a `Failure`."""
    url = base_url + request.path
    try:
        response = session.get(url, params=dict(request.params), timeout=timeout_s)
    except requests.Timeout:
        return schedule.Failure("timeout", f"no answer in {timeout_s}s")
    except requests.exceptions.ChunkedEncodingError as exc:
        # The body stopped short of its Content-Length: a truncated answer.
        return schedule.Failure("malformed", f"truncated body: {exc}")
    except requests.RequestException as exc:
        return schedule.Failure("connection", str(exc))
    return schedule.Answer(response.status_code, response.content, response.headers)


def now() -> schedule.Now:
    return schedule.Now(wall_ms=wall_clock_ms(), mono_s=time.monotonic())


class Procedure(Protocol):
    """A live source's pure decision procedure: `Schedule` or `StreamOrder`."""

    def next_step(self, now: schedule.Now) -> list[Trade] | schedule.Wait | schedule.Request: ...

    def on_answer(
        self, request: schedule.Request, response: schedule.Answer | schedule.Failure, now: schedule.Now
    ) -> schedule.Outcome: ...


class StepDriver:
    """The I/O of a live source's procedure: asks it what to do now, waits as long as it says or sends
    the request it chose, hands the answer back and counts what the answer changed."""

    def __init__(self, settings: Settings, metrics: ProducerMetrics, stop: threading.Event) -> None:
        self._base_url = settings.binance_base_url.rstrip("/")
        self._timeout_s = settings.http_timeout_s
        self._metrics = metrics
        self._stop = stop
        self._session = http_session()

    def step(self, procedure: Procedure, wait: Callable[[float], object]) -> list[Trade]:
        """The trades `procedure` releases in one step; `wait(seconds)` blocks while it says to wait."""
        step = procedure.next_step(now())
        if isinstance(step, list):
            return step
        if isinstance(step, schedule.Wait):
            wait(min(step.seconds, MAX_BLOCK_S))
            return []
        if self._stop.is_set():
            return []
        self._metrics.add("polls")
        response = fetch(self._session, self._base_url, self._timeout_s, step)
        outcome = procedure.on_answer(step, response, now())
        count_outcome(self._metrics, outcome)
        return outcome.released

    def close(self) -> None:
        self._session.close()


class BinanceSource:
    """`TradeSource` over the Binance REST API (or anything at `binance_base_url` that speaks it)."""

    def __init__(
        self,
        settings: Settings,
        metrics: ProducerMetrics,
        stop: threading.Event,
        *,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._stop = stop
        self._driver = StepDriver(settings, metrics, stop)
        self._schedule = schedule.Schedule(
            settings.symbols,
            poll_interval_s=settings.poll_interval_s,
            budget_per_minute=settings.weight_budget_per_minute,
            lead_ms=event_time_lead_ms(settings.event_time_lead, settings.watermark_delay),
            jitter=jitter,
        )

    def resume(self, last: Mapping[str, Trade]) -> None:
        self._schedule.resume(last)

    def close(self) -> None:
        self._driver.close()

    def next_batch(self) -> list[Trade]:
        return self._driver.step(self._schedule, self._stop.wait)


def count_outcome(metrics: ProducerMetrics, outcome: schedule.Outcome) -> None:
    """Add what one answer changed to the producer's counters."""
    if outcome.used_weight_1m is not None:
        metrics.set_used_weight(outcome.used_weight_1m)
    if outcome.http_error is not None:
        metrics.http_error(outcome.http_error)
    for name, happened in (
        ("rate_limited_429", outcome.rate_limited_429),
        ("banned_418", outcome.banned_418),
        ("gaps_backfilled", outcome.gap_backfilled),
        ("unrecoverable_gaps", outcome.unrecoverable_gap),
    ):
        if happened:
            metrics.add(name)
