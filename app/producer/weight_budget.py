"""Pure arithmetic of the Binance request-weight budget and of retry back-off.

Binance counts request weight per IP in fixed one-minute intervals (the `X-MBX-USED-WEIGHT-1M`
response header) and answers 429 past 6,000, then 418 (an IP ban) if a client keeps going. The
producer spends at most its own budget per interval, shared by every symbol it polls. Time is
passed in as milliseconds so the arithmetic is testable without a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

MINUTE_MS = 60_000


@dataclass
class WeightBudget:
    """Weight spent in the current one-minute interval, plus any server-imposed pause."""

    limit: int
    interval_ms: int = MINUTE_MS
    _interval_start: int = -1
    _used: int = 0
    _blocked_until: int = 0

    def __post_init__(self) -> None:
        if self.limit <= 0:
            raise ValueError(f"weight budget must be positive, got {self.limit}")

    def _roll(self, now_ms: int) -> None:
        start = now_ms - now_ms % self.interval_ms
        if start != self._interval_start:
            self._interval_start = start
            self._used = 0

    def used(self, now_ms: int) -> int:
        self._roll(now_ms)
        return self._used

    def delay_ms(self, weight: int, now_ms: int) -> int:
        """How long to wait before a request of this weight may be sent (0 = now)."""
        if weight > self.limit:
            raise ValueError(f"a request of weight {weight} can never fit a budget of {self.limit}")
        if now_ms < self._blocked_until:
            return self._blocked_until - now_ms
        self._roll(now_ms)
        if self._used + weight <= self.limit:
            return 0
        return self._interval_start + self.interval_ms - now_ms

    def spend(self, weight: int, now_ms: int) -> None:
        """Reserve the weight of a request about to be sent."""
        self._roll(now_ms)
        self._used += weight

    def observe_used(self, used_weight: int, now_ms: int) -> None:
        """Synchronise with the server's count; it also counts other clients on the same IP."""
        self._roll(now_ms)
        self._used = max(self._used, used_weight)

    def block_until(self, until_ms: int) -> None:
        """No request before this instant (429 Retry-After, 418 ban)."""
        self._blocked_until = max(self._blocked_until, until_ms)

    def blocked_until(self) -> int:
        return self._blocked_until


def backoff_s(failures: int, *, base_s: float, cap_s: float, jitter: float) -> float:
    """Delay after `failures` consecutive failures: exponential, capped, "full jitter".

    `jitter` is a uniform draw in [0, 1) supplied by the caller, so that several symbols
    failing together do not retry in lockstep and the function stays deterministic in tests.
    """
    if failures <= 0:
        return 0.0
    ceiling = min(cap_s, base_s * 2.0 ** (failures - 1))
    # Half fixed, half random: never retries immediately, never waits past the cap.
    return ceiling / 2 + ceiling / 2 * jitter


def parse_retry_after(value: str | None, default_s: float) -> float:
    """Seconds from a Retry-After header (Binance sends integer seconds); default if absent/bad."""
    if value is None:
        return default_s
    try:
        seconds = float(value.strip())
    except ValueError:
        return default_s
    return seconds if seconds >= 0 else default_s


def parse_used_weight(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        used = int(value.strip())
    except ValueError:
        return None
    return used if used >= 0 else None


# Share of the budget steady polling may use; the rest is headroom for back-fills after a gap.
POLLING_SHARE = 0.8


def paced_poll_interval_s(requested_s: float, symbols: int, weight: int, limit_per_minute: int) -> float:
    """The per-symbol poll interval that keeps steady polling within its share of the budget.

    Without it, many symbols at a short interval would spend the minute's budget early and then
    all stall until the next minute; stretching the interval spreads the same requests evenly.
    """
    floor_s = symbols * weight * (MINUTE_MS / 1000) / (limit_per_minute * POLLING_SHARE)
    return max(requested_s, floor_s)
