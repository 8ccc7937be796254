"""Write the bundled replay sample: synthetic BTCUSDT trades in the Binance public-data CSV layout.

Deterministic (fixed seed), so `python -m app.producer.sample.generate` reproduces the committed
file byte for byte. Columns (no header): id, price, qty, quote_qty, time (microseconds, as in
Binance spot files since 2025), is_buyer_maker, is_best_match.
"""

from __future__ import annotations

import argparse
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

SAMPLE_PATH = Path(__file__).resolve().parent / "BTCUSDT-trades-sample.csv"
SEED = 20250115
FIRST_ID = 4_500_000_000
# 2025-01-15 12:00:00 UTC in microseconds.
FIRST_TIME_US = 1_736_942_400_000_000
DURATION_S = 20 * 60
MEAN_GAP_US = 350_000  # about three trades a second
CENT = Decimal("0.01")
SATOSHI_PLACES = 8


@dataclass(frozen=True, slots=True)
class Row:
    trade_id: int
    price: str
    qty: str
    quote_qty: str
    time_us: int
    is_buyer_maker: bool

    def csv(self) -> str:
        values = (
            self.trade_id,
            self.price,
            self.qty,
            self.quote_qty,
            self.time_us,
            self.is_buyer_maker,
            True,
        )
        return ",".join(str(value) for value in values)


def _eight_places(value: Decimal) -> str:
    return f"{value:.8f}"


def generate_rows(
    rng: random.Random,
    *,
    first_id: int,
    first_time_us: int,
    count: int | None = None,
    duration_s: float | None = None,
    start_price: Decimal = Decimal("67000.00"),
    mean_gap_us: int = MEAN_GAP_US,
) -> Iterator[Row]:
    """Trades on a bounded random walk in 60k-100k: cents prices, up to 5 significant qty places."""
    price = start_price
    time_us = first_time_us
    trade_id = first_id
    end_us = first_time_us + int(duration_s * 1_000_000) if duration_s is not None else None
    produced = 0
    while (count is None or produced < count) and (end_us is None or time_us < end_us):
        step = Decimal(str(round(rng.gauss(0, 4.0), 2)))
        price = min(Decimal("99999.99"), max(Decimal("60000.00"), price + step)).quantize(CENT)
        # Mostly small retail fills, sometimes a larger one.
        qty = Decimal(rng.randint(1, 60_000 if rng.random() < 0.9 else 2_000_000)).scaleb(-SATOSHI_PLACES + 3)
        quote = price * qty
        yield Row(
            trade_id=trade_id,
            price=_eight_places(price),
            qty=_eight_places(qty),
            quote_qty=format(quote.normalize(), "f"),
            time_us=time_us,
            is_buyer_maker=rng.random() < 0.5,
        )
        produced += 1
        trade_id += 1
        # Several fills of one order share a timestamp; otherwise exponential arrivals.
        if rng.random() > 0.2:
            time_us += max(1, int(rng.expovariate(1 / mean_gap_us)))


def write_sample(path: Path = SAMPLE_PATH) -> int:
    rng = random.Random(SEED)
    rows = list(generate_rows(rng, first_id=FIRST_ID, first_time_us=FIRST_TIME_US, duration_s=DURATION_S))
    path.write_text("".join(row.csv() + "\n" for row in rows))
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=SAMPLE_PATH)
    args = parser.parse_args()
    count = write_sample(args.output)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger(__name__).info("wrote %d trades to %s", count, args.output)


if __name__ == "__main__":
    main()
