"""The budget arithmetic that keeps the producer under Binance's weight limit."""

from __future__ import annotations

import pytest

from app.producer.weight_budget import (
    MINUTE_MS,
    WeightBudget,
    backoff_s,
    paced_poll_interval_s,
    parse_retry_after,
    parse_used_weight,
)

T0 = 1_736_942_400_000  # a minute boundary


def test_spends_up_to_the_limit_then_waits_for_the_next_minute() -> None:
    budget = WeightBudget(limit=100)
    now = T0 + 10_000
    for _ in range(4):
        assert budget.delay_ms(25, now) == 0
        budget.spend(25, now)
    assert budget.used(now) == 100
    assert budget.delay_ms(25, now) == MINUTE_MS - 10_000
    assert budget.delay_ms(25, T0 + MINUTE_MS) == 0
    assert budget.used(T0 + MINUTE_MS) == 0


def test_server_count_wins_when_it_is_higher() -> None:
    budget = WeightBudget(limit=3000)
    budget.spend(25, T0)
    budget.observe_used(2990, T0 + 1)
    assert budget.used(T0 + 2) == 2990
    assert budget.delay_ms(25, T0 + 2) == MINUTE_MS - 2
    # A lower header (e.g. the server's minute rolled first) never lowers the local count.
    budget.observe_used(10, T0 + 3)
    assert budget.used(T0 + 3) == 2990


def test_block_until_overrides_free_budget_and_never_shortens() -> None:
    budget = WeightBudget(limit=3000)
    budget.block_until(T0 + 2000)
    budget.block_until(T0 + 1000)
    assert budget.delay_ms(25, T0) == 2000
    assert budget.delay_ms(25, T0 + 1999) == 1
    assert budget.delay_ms(25, T0 + 2000) == 0


def test_rejects_impossible_budgets() -> None:
    with pytest.raises(ValueError):
        WeightBudget(limit=0)
    with pytest.raises(ValueError):
        WeightBudget(limit=20).delay_ms(25, T0)


@pytest.mark.parametrize(
    ("failures", "jitter", "expected"),
    [(0, 0.9, 0.0), (1, 0.0, 0.25), (1, 1.0, 0.5), (3, 0.5, 1.5), (20, 0.0, 15.0), (20, 1.0, 30.0)],
)
def test_backoff_grows_exponentially_with_jitter_and_a_cap(
    failures: int, jitter: float, expected: float
) -> None:
    assert backoff_s(failures, base_s=0.5, cap_s=30.0, jitter=jitter) == pytest.approx(expected)


def test_header_parsing_tolerates_missing_or_bad_values() -> None:
    assert parse_retry_after("2", 60) == 2.0
    assert parse_retry_after(None, 60) == 60
    assert parse_retry_after("soon", 60) == 60
    assert parse_retry_after("-1", 60) == 60
    assert parse_used_weight("1234") == 1234
    assert parse_used_weight(None) is None
    assert parse_used_weight("x") is None


def test_poll_interval_is_stretched_only_when_polling_would_eat_the_budget() -> None:
    # One symbol every second: 1500 of 3000 per minute, as asked.
    assert paced_poll_interval_s(1.0, 1, 25, 3000) == 1.0
    # Four symbols every second would need 6000: spread to 80% of 3000 instead.
    interval = paced_poll_interval_s(1.0, 4, 25, 3000)
    assert interval == pytest.approx(2.5)
    assert 4 * 25 * 60 / interval == pytest.approx(0.8 * 3000)
