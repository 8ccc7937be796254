"""The fake exchange's own rules, which other tests rely on: weights, 429 past the limit, 418."""

from __future__ import annotations

import requests

from tests.producer.conftest import away_from_minute_end
from tests.support.fake_exchange import HISTORICAL_TRADES_PATH, TRADES_PATH, FakeExchange


def test_endpoints_answer_like_binance() -> None:
    with FakeExchange(symbols=("BTCUSDT",), initial_trades=1200, first_id=100) as exchange:
        latest = requests.get(
            f"{exchange.base_url}{TRADES_PATH}", params={"symbol": "BTCUSDT", "limit": "1000"}
        )
        assert latest.status_code == 200
        assert [t["id"] for t in latest.json()] == list(range(300, 1300))
        assert int(latest.headers["X-MBX-USED-WEIGHT-1M"]) >= 25
        history = requests.get(
            f"{exchange.base_url}{HISTORICAL_TRADES_PATH}",
            params={"symbol": "BTCUSDT", "limit": "5", "fromId": "150"},
        )
        assert [t["id"] for t in history.json()] == [150, 151, 152, 153, 154]
        assert set(history.json()[0]) == {
            "id",
            "price",
            "qty",
            "quoteQty",
            "time",
            "isBuyerMaker",
            "isBestMatch",
        }
        unknown = requests.get(f"{exchange.base_url}{TRADES_PATH}", params={"symbol": "NOPE"})
        assert (unknown.status_code, unknown.json()["code"]) == (400, -1121)


def test_past_the_limit_429_then_418_for_who_ignores_it() -> None:
    away_from_minute_end(3.0)
    with FakeExchange(symbols=("BTCUSDT",), initial_trades=10, weight_limit=50, ban_s=1) as exchange:
        url = f"{exchange.base_url}{TRADES_PATH}?symbol=BTCUSDT"
        statuses = [requests.get(url).status_code for _ in range(4)]
        assert statuses == [200, 200, 429, 418]
        assert [r.violation for r in exchange.requests()] == [False, False, False, True]
        assert exchange.max_weight_per_minute() == 100
