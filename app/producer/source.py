"""The interface every trade source (live Binance, file replay) offers to the run loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from app.common.schema import Trade


class TradeSource(Protocol):
    def resume(self, last: Mapping[str, Trade]) -> None:
        """Continue after these trades (the raw topic's tail per symbol); absent = fresh start."""

    def next_batch(self) -> list[Trade]:
        """The next trades, ascending id per symbol, each id exactly once since `resume`.

        Blocks for at most about a poll interval and returns [] when there is nothing yet or
        the stop event is set. Never raises for a bad answer from the outside world.
        """
        ...
