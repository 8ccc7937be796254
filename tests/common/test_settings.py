"""Settings helpers that several processes share."""

from __future__ import annotations

import pytest

from app.common.settings import duration_ms


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10 seconds", 10_000), ("1 second", 1_000), ("500 milliseconds", 500), ("2 minutes", 120_000)],
)
def test_spark_intervals_read_as_milliseconds(text: str, expected: int) -> None:
    assert duration_ms(text) == expected


@pytest.mark.parametrize("text", ["10", "ten seconds", "10 fortnights", ""])
def test_anything_else_is_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="10 seconds"):
        duration_ms(text)
