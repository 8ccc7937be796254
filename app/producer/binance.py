"""Live source: polls Binance REST API v3 for each symbol within one shared weight budget.

`/api/v3/trades` gives the latest trades; when its oldest id is past the last one published,
`/api/v3/historicalTrades?fromId=` fills the hole first, so every id goes out exactly once and in
order. Symbols advance together in event time: of the symbols due, the least complete is fetched
first, and trades more than the event-time lead (event_time_lead) ahead of the least published symbol wait in
memory, so a catch-up never makes another symbol's trades late for the streaming job. 429 pauses
every symbol for Retry-After, 418 (IP ban) stops all polling for the ban period; 5xx, timeouts,
dropped connections and bad bodies back off with jitter and are counted.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from app.common.schema import RecordError, Trade
from app.common.schema import now_ms as wall_clock_ms
from app.common.settings import Settings
from app.producer.metrics import ProducerMetrics
from app.producer.trades import classify_poll, releasable, release_horizon_ms, trades_from_body
from app.producer.weight_budget import (
    WeightBudget,
    backoff_s,
    paced_poll_interval_s,
    parse_retry_after,
    parse_used_weight,
)

log = logging.getLogger(__name__)

TRADES_PATH = "/api/v3/trades"
HISTORICAL_TRADES_PATH = "/api/v3/historicalTrades"
# Request weight of both endpoints with limit=1000 (Binance spot REST API, 2024 onwards).
REQUEST_WEIGHT = 25
PAGE_SIZE = 1000
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
# Binance's shortest IP ban is 2 minutes; used only if a 418 comes without Retry-After.
DEFAULT_BAN_S = 120.0
# The run loop publishes metrics and checks for shutdown at least this often.
MAX_BLOCK_S = 1.0
# A symbol failing this many times in a row stops holding the others back in event time (a delisted
# symbol must not stall the rest); its later trades may then arrive late for the streaming job.
STALLED_AFTER_FAILURES = 5


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


@dataclass
class _SymbolState:
    last_id: int | None = None
    backfill_to: int | None = None  # set while ids up to this one are being back-filled
    failures: int = 0
    due: float = 0.0  # time.monotonic() of the next request
    complete_to_ms: int | None = None  # every trade up to this trade time has been fetched
    pending: list[Trade] = field(default_factory=list)  # fetched, held back by the event-time horizon

    def published_to_ms(self) -> int | None:
        """Trade time up to which this symbol's trades have all gone out (or are known not to exist)."""
        if self.pending:
            return self.pending[0].trade_time - 1
        return self.complete_to_ms


class BinanceSource:
    """`TradeSource` over the Binance REST API (or anything at `binance_base_url` that speaks it)."""

    def __init__(
        self,
        settings: Settings,
        metrics: ProducerMetrics,
        stop: threading.Event,
        *,
        session: requests.Session | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._base_url = settings.binance_base_url.rstrip("/")
        self._poll_interval_s = paced_poll_interval_s(
            settings.poll_interval_s, len(settings.symbols), REQUEST_WEIGHT, settings.weight_budget_per_minute
        )
        if self._poll_interval_s > settings.poll_interval_s:
            log.warning(
                "event=poll_interval_stretched requested_s=%s effective_s=%.2f reason=weight_budget",
                settings.poll_interval_s,
                self._poll_interval_s,
            )
        self._timeout_s = settings.http_timeout_s
        self._budget = WeightBudget(settings.weight_budget_per_minute)
        self._metrics = metrics
        self._stop = stop
        self._session = session or http_session()
        self._jitter = jitter
        self._states = {symbol: _SymbolState() for symbol in settings.symbols}
        self._lead_ms = settings.event_time_lead.ms
        self._announced_block = 0

    def resume(self, last: Mapping[str, Trade]) -> None:
        for symbol, state in self._states.items():
            state.last_id = last[symbol].trade_id if symbol in last else None
            state.complete_to_ms = last[symbol].trade_time if symbol in last else None
            state.pending = []
            state.backfill_to = None
            state.failures = 0
            state.due = 0.0
            log.info("event=resume source=binance symbol=%s last_id=%s", symbol, state.last_id)

    def close(self) -> None:
        self._session.close()

    def next_batch(self) -> list[Trade]:
        released = self._release()
        if released:
            return released
        symbol, state = self._choose()
        wait_s = state.due - time.monotonic()
        if wait_s > 0:
            self._stop.wait(min(wait_s, MAX_BLOCK_S))
            return []
        now_ms = wall_clock_ms()
        delay_ms = self._budget.delay_ms(REQUEST_WEIGHT, now_ms)
        if delay_ms > 0:
            self._announce_block(now_ms, delay_ms)
            self._stop.wait(min(delay_ms / 1000, MAX_BLOCK_S))
            return []
        if self._stop.is_set():
            return []
        self._budget.spend(REQUEST_WEIGHT, now_ms)
        if state.backfill_to is not None and state.last_id is not None:
            params = {"symbol": symbol, "limit": str(PAGE_SIZE), "fromId": str(state.last_id + 1)}
            body = self._get(HISTORICAL_TRADES_PATH, params, state)
            fetched = [] if body is None else self._on_history(symbol, state, body)
        else:
            body = self._get(TRADES_PATH, {"symbol": symbol, "limit": str(PAGE_SIZE)}, state)
            fetched = [] if body is None else self._on_latest(symbol, state, body, now_ms)
        state.pending.extend(fetched)
        return self._release()

    def _choose(self) -> tuple[str, _SymbolState]:
        """Of the symbols due now, the least complete (it holds the others back; one never fetched
        goes first); when none is due, the one due soonest."""
        now = time.monotonic()
        due = [item for item in self._states.items() if item[1].due <= now]
        if due:
            return min(due, key=lambda item: item[1].complete_to_ms or -1)
        return min(self._states.items(), key=lambda item: item[1].due)

    def _release(self) -> list[Trade]:
        """The fetched trades of one symbol that the event-time horizon lets out now."""
        horizon = release_horizon_ms(
            (s.published_to_ms() for s in self._states.values() if s.failures < STALLED_AFTER_FAILURES),
            self._lead_ms,
        )
        for state in self._states.values():
            count = releasable(state.pending, horizon)
            if count:
                batch, state.pending = state.pending[:count], state.pending[count:]
                return batch
        return []

    def _announce_block(self, now_ms: int, delay_ms: int) -> None:
        blocked_until = self._budget.blocked_until()
        if blocked_until > now_ms and blocked_until != self._announced_block:
            self._announced_block = blocked_until
            log.warning("event=paused reason=server_limit resume_in_s=%.1f", delay_ms / 1000)

    def _get(self, path: str, params: dict[str, str], state: _SymbolState) -> bytes | None:
        """The body of a 200 answer, or None after counting the failure and scheduling a retry."""
        self._metrics.add("polls")
        url = self._base_url + path
        try:
            response = self._session.get(url, params=params, timeout=self._timeout_s)
        except requests.Timeout:
            self._failed(state, "timeout", f"no answer in {self._timeout_s}s", path)
            return None
        except requests.exceptions.ChunkedEncodingError as exc:
            # The body stopped short of its Content-Length: a truncated answer.
            self._failed(state, "malformed", f"truncated body: {exc}", path)
            return None
        except requests.RequestException as exc:
            self._failed(state, "connection", str(exc), path)
            return None
        now_ms = wall_clock_ms()
        used = parse_used_weight(response.headers.get(USED_WEIGHT_HEADER))
        if used is not None:
            self._budget.observe_used(used, now_ms)
        self._metrics.set_used_weight(self._budget.used(now_ms))
        status = response.status_code
        if status == 200:
            return response.content
        if status == 429:
            # The limit is per IP: every symbol waits, not just this one.
            wait_s = parse_retry_after(response.headers.get("Retry-After"), 60.0)
            self._budget.block_until(now_ms + int(wait_s * 1000))
            self._metrics.add("rate_limited_429")
            log.warning("event=rate_limited status=429 retry_after_s=%s path=%s", wait_s, path)
            return None
        if status == 418:
            wait_s = parse_retry_after(response.headers.get("Retry-After"), DEFAULT_BAN_S)
            self._budget.block_until(now_ms + int(wait_s * 1000))
            self._metrics.add("banned_418")
            log.error("event=ip_banned status=418 ban_s=%s path=%s", wait_s, path)
            return None
        kind = "5xx" if status >= 500 else "4xx"
        self._failed(state, kind, f"HTTP {status}: {response.text[:200]!r}", path)
        return None

    def _failed(self, state: _SymbolState, kind: str, detail: str, path: str) -> None:
        self._metrics.http_error(kind)
        state.failures += 1
        delay = backoff_s(state.failures, base_s=BACKOFF_BASE_S, cap_s=BACKOFF_CAP_S, jitter=self._jitter())
        state.due = time.monotonic() + delay
        log.warning(
            "event=http_error kind=%s path=%s failures=%d retry_in_s=%.2f detail=%r",
            kind,
            path,
            state.failures,
            delay,
            detail,
        )

    def _parse(self, body: bytes, symbol: str, state: _SymbolState, path: str) -> list[Trade] | None:
        try:
            trades = trades_from_body(body, symbol, wall_clock_ms())
        except RecordError as exc:
            # Nothing from this answer is used: the same ids are asked for again.
            self._failed(state, "malformed", str(exc), path)
            return None
        state.failures = 0
        return trades

    def _on_latest(self, symbol: str, state: _SymbolState, body: bytes, asked_ms: int) -> list[Trade]:
        trades = self._parse(body, symbol, state, TRADES_PATH)
        if trades is None:
            return []
        outcome = classify_poll(state.last_id, trades)
        if outcome.missing_from is not None:
            state.backfill_to = outcome.missing_to
            state.due = 0.0
            log.info(
                "event=gap symbol=%s missing_from=%s missing_to=%s",
                symbol,
                outcome.missing_from,
                outcome.missing_to,
            )
            return []
        if outcome.new:
            state.last_id = outcome.new[-1].trade_id
        # No gap: every trade made before the request is in this answer or was fetched before.
        state.complete_to_ms = max(asked_ms, state.complete_to_ms or 0)
        # A full page of new trades means more may be waiting: ask again at once.
        full_page = len(outcome.new) >= PAGE_SIZE and len(trades) >= PAGE_SIZE
        state.due = 0.0 if full_page else time.monotonic() + self._poll_interval_s
        return outcome.new

    def _on_history(self, symbol: str, state: _SymbolState, body: bytes) -> list[Trade]:
        trades = self._parse(body, symbol, state, HISTORICAL_TRADES_PATH)
        if trades is None or state.last_id is None or state.backfill_to is None:
            return []
        expected = state.last_id + 1
        if trades and trades[0].trade_id > expected:
            # Binance no longer has these ids: say so loudly rather than stall forever.
            self._metrics.add("unrecoverable_gaps")
            log.error(
                "event=unrecoverable_gap symbol=%s missing_from=%d missing_to=%d",
                symbol,
                expected,
                trades[0].trade_id - 1,
            )
        new = [t for t in trades if t.trade_id >= expected]
        if new:
            state.last_id = new[-1].trade_id
            state.complete_to_ms = max(new[-1].trade_time, state.complete_to_ms or 0)
        if state.last_id >= state.backfill_to or len(trades) < PAGE_SIZE:
            log.info("event=gap_filled symbol=%s up_to=%d", symbol, state.last_id)
            state.backfill_to = None
            self._metrics.add("gaps_backfilled")
        state.due = 0.0
        return new
