"""Which klines to ask for, and what an answer settles: the reconciler's rules as pure code.

Final windows wait here until their minute is surely complete at the exchange, then go out in one
`GET /api/v3/klines` per symbol covering up to 1,000 minutes (weight 2 whatever the span), so
steady state costs one request per symbol per minute and a catch-up of a day costs two. A minute
whose kline is missing or malformed (or whose request failed) is asked for again with back-off,
and after MAX_ATTEMPTS is recorded as unavailable: never as a match. Time is passed in, so every
rule is testable without a clock or a server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from app.common.schema import Reconciliation, WindowStats
from app.core.windows import WINDOW_MS
from app.producer.weight_budget import backoff_s
from app.reconcile.klines import KlineAnswer, reconcile, unavailable

KLINES_PATH = "/api/v3/klines"
KLINES_WEIGHT = 2
MAX_LIMIT = 1000
# A kline is final once its minute is over; this much more allows for the exchange's own clock.
SETTLE_MS = 2_000
# Spark writes a micro-batch's final windows together: wait this long so they share a request.
GATHER_MS = 1_000
MAX_ATTEMPTS = 5
RETRY_BASE_S = 2.0
RETRY_CAP_S = 60.0


@dataclass(frozen=True, slots=True)
class KlineRequest:
    symbol: str
    starts: tuple[int, ...]  # the pending minutes it settles, ascending

    @property
    def params(self) -> dict[str, str]:
        first, last = self.starts[0], self.starts[-1]
        return {
            "symbol": self.symbol,
            "interval": "1m",
            "startTime": str(first),
            "endTime": str(last + WINDOW_MS - 1),
            "limit": str((last - first) // WINDOW_MS + 1),
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    records: list[Reconciliation] = field(default_factory=list)
    missing: int = 0
    malformed: int = 0
    retries: int = 0


@dataclass(slots=True)
class _Pending:
    window: WindowStats
    arrived_ms: int
    offset: tuple[int, int]  # (partition, offset) of the aggregates record it came from
    attempts: int = 0
    next_try_ms: int = 0


class Plan:
    """Pending final windows per symbol, by window start."""

    def __init__(self, jitter: Callable[[], float]) -> None:
        self._jitter = jitter
        self._pending: dict[str, dict[int, _Pending]] = {}

    def add(self, window: WindowStats, offset: tuple[int, int], now_ms: int) -> None:
        """A final window to check; a repeat of a pending one replaces its values, keeps its place."""
        by_start = self._pending.setdefault(window.symbol, {})
        known = by_start.get(window.window_start)
        if known is None:
            by_start[window.window_start] = _Pending(window, now_ms, offset)
        else:
            known.window = window
            known.offset = min(known.offset, offset)

    def pending(self) -> int:
        return sum(len(by_start) for by_start in self._pending.values())

    def held_offsets(self) -> dict[int, int]:
        """Per partition, the oldest aggregates offset not yet settled: where a restart resumes."""
        held: dict[int, int] = {}
        for by_start in self._pending.values():
            for item in by_start.values():
                partition, offset = item.offset
                held[partition] = min(held.get(partition, offset), offset)
        return held

    def next_request(self, now_ms: int) -> KlineRequest | None:
        """The next request due: the oldest due minutes of one symbol, within one answer's span."""
        for symbol, by_start in sorted(self._pending.items()):
            due = sorted(start for start, item in by_start.items() if self._due(item, now_ms))
            if due:
                span = [start for start in due if start < due[0] + MAX_LIMIT * WINDOW_MS]
                return KlineRequest(symbol, tuple(span))
        return None

    @staticmethod
    def _due(item: _Pending, now_ms: int) -> bool:
        return (
            item.window.window_end + SETTLE_MS <= now_ms
            and item.arrived_ms + GATHER_MS <= now_ms
            and item.next_try_ms <= now_ms
        )

    def on_answer(self, request: KlineRequest, answer: KlineAnswer, now_ms: int) -> Outcome:
        records: list[Reconciliation] = []
        missing = malformed = retries = 0
        for start in request.starts:
            item = self._pending[request.symbol].get(start)
            if item is None:
                continue
            kline = answer.klines.get(start)
            if kline is not None:
                records.append(reconcile(item.window, kline, now_ms))
                del self._pending[request.symbol][start]
                continue
            if start in answer.malformed:
                malformed += 1
                reason = f"malformed kline: {answer.malformed[start]}"
            else:
                missing += 1
                reason = "no kline for the minute"
            retries += self._failed(request.symbol, start, reason, now_ms, records)
        return Outcome(records, missing, malformed, retries)

    def on_failure(self, request: KlineRequest, reason: str, now_ms: int, *, malformed: bool) -> Outcome:
        """The request got no usable answer (HTTP error, or a body that is not klines)."""
        records: list[Reconciliation] = []
        retries = sum(
            self._failed(request.symbol, start, reason, now_ms, records) for start in request.starts
        )
        return Outcome(records, malformed=len(request.starts) if malformed else 0, retries=retries)

    def _failed(
        self, symbol: str, start: int, reason: str, now_ms: int, records: list[Reconciliation]
    ) -> int:
        """1 if the minute will be asked for again, 0 if it was given up as unavailable."""
        item = self._pending[symbol].get(start)
        if item is None:
            return 0
        item.attempts += 1
        if item.attempts >= MAX_ATTEMPTS:
            records.append(unavailable(item.window, f"{reason} (after {item.attempts} attempts)", now_ms))
            del self._pending[symbol][start]
            return 0
        delay_s = backoff_s(item.attempts, base_s=RETRY_BASE_S, cap_s=RETRY_CAP_S, jitter=self._jitter())
        item.next_try_ms = now_ms + int(delay_s * 1000)
        return 1
