"""Producer counters, published every few seconds to the metrics topic as `ProducerMetric`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from app.common.schema import ProducerMetric

ERROR_KINDS = ("5xx", "4xx", "timeout", "connection", "malformed")


@dataclass
class ProducerMetrics:
    """Thread-safe counters; `snapshot` is the record the dashboard and the fault checks read."""

    budget_per_minute: int
    trades_published: int = 0
    polls: int = 0
    gaps_backfilled: int = 0
    unrecoverable_gaps: int = 0
    rate_limited_429: int = 0
    banned_418: int = 0
    used_weight_1m: int = 0
    producer_rebuilds: int = 0
    stream_connects: int = 0
    stream_malformed_frames: int = 0
    stream_unknown_symbol_frames: int = 0
    stream_out_of_order_frames: int = 0
    http_errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def http_error(self, kind: str) -> None:
        with self._lock:
            self.http_errors[kind] = self.http_errors.get(kind, 0) + 1

    def set_used_weight(self, used: int) -> None:
        with self._lock:
            self.used_weight_1m = used

    def snapshot(self, now_ms: int) -> ProducerMetric:
        with self._lock:
            return ProducerMetric(
                time=now_ms,
                trades_published=self.trades_published,
                polls=self.polls,
                gaps_backfilled=self.gaps_backfilled,
                unrecoverable_gaps=self.unrecoverable_gaps,
                http_errors=dict(self.http_errors),
                rate_limited_429=self.rate_limited_429,
                banned_418=self.banned_418,
                used_weight_1m=self.used_weight_1m,
                budget_per_minute=self.budget_per_minute,
                producer_rebuilds=self.producer_rebuilds,
                stream_connects=self.stream_connects,
                stream_malformed_frames=self.stream_malformed_frames,
                stream_unknown_symbol_frames=self.stream_unknown_symbol_frames,
                stream_out_of_order_frames=self.stream_out_of_order_frames,
            )

    def to_json(self, now_ms: int) -> bytes:
        return self.snapshot(now_ms).to_json()
