"""Fixtures of the producer tests: the fake exchange and helpers that drive a source."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from app.common.schema import Trade
from app.producer.source import TradeSource
from tests.support.fake_exchange import FakeExchange


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    with FakeExchange(symbols=("BTCUSDT", "ETHUSDT"), initial_trades=1500) as fake:
        yield fake


def drain(
    source: TradeSource, seconds: float, until: Callable[[list[Trade]], bool] | None = None
) -> list[Trade]:
    """Everything the source gives within `seconds`, or until `until(collected)` holds."""
    collected: list[Trade] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        collected.extend(source.next_batch())
        if until is not None and until(collected):
            break
    return collected


def ids_of(trades: list[Trade], symbol: str) -> list[int]:
    return [t.trade_id for t in trades if t.symbol == symbol]


def away_from_minute_end(margin_s: float) -> None:
    """Wait, if needed, so that the next `margin_s` seconds stay in one wall-clock minute."""
    left = 60 - time.time() % 60
    if left < margin_s:
        time.sleep(left + 0.05)
