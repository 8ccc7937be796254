"""The bundled sample is what its committed generator makes, and looks like BTCUSDT trades."""

from __future__ import annotations

import csv
import re
from decimal import Decimal
from pathlib import Path

from app.producer.sample.generate import SAMPLE_PATH, write_sample


def test_generator_reproduces_the_committed_file(tmp_path: Path) -> None:
    fresh = tmp_path / "sample.csv"
    write_sample(fresh)
    assert fresh.read_bytes() == SAMPLE_PATH.read_bytes()


def test_sample_is_small_and_realistic() -> None:
    assert SAMPLE_PATH.stat().st_size < 1_000_000
    with SAMPLE_PATH.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert 2000 <= len(rows) <= 10_000
    eight_places = re.compile(r"^\d+\.\d{8}$")
    for row in rows:
        price, qty, quote = Decimal(row[1]), Decimal(row[2]), Decimal(row[3])
        assert eight_places.match(row[1]) and eight_places.match(row[2])
        assert Decimal("60000") <= price <= Decimal("100000")
        assert price == price.quantize(Decimal("0.01"))
        assert qty > 0
        assert quote == price * qty
    ids = [int(r[0]) for r in rows]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
