"""The fake exchange's klines are Binance's: for the recorded trades it serves, over real HTTP, the
very rows Binance served for the same minutes (every field, as text), with real weight headers."""

from __future__ import annotations

import json
from decimal import Decimal

import requests

from app.core.windows import WINDOW_MS
from app.reconcile.klines import Kline
from tests.support.fake_exchange import KLINES_PATH, FakeExchange
from tests.support.recorded import KLINES_FILE, SYMBOL, complete_minute_klines, recorded_trades


def _get(exchange: FakeExchange, **params: str) -> requests.Response:
    return requests.get(
        exchange.base_url + KLINES_PATH, params={"symbol": SYMBOL, "interval": "1m"} | params, timeout=10
    )


def test_klines_of_the_recorded_trades_are_binances_own_rows() -> None:
    trades = recorded_trades()
    complete = [k.open_time for k in complete_minute_klines()]
    recorded = {row[0]: row for row in json.loads(KLINES_FILE.read_text()) if row[0] in complete}
    with FakeExchange(symbols=(SYMBOL,), initial_trades=0, first_id=trades[0]["id"]) as exchange:
        exchange.append(SYMBOL, trades=trades)
        response = _get(
            exchange, startTime=str(complete[0]), endTime=str(complete[-1] + WINDOW_MS - 1), limit="1000"
        )
        assert response.status_code == 200
        assert response.headers["X-MBX-USED-WEIGHT-1M"] == "2"
        served = response.json()
    assert len(recorded) == 14
    assert {row[0]: row for row in served} == recorded
    assert all(isinstance(row, list) and len(row) == 12 for row in served)


def test_limit_wrong_malformed_and_missing_klines() -> None:
    trades = recorded_trades()
    minutes = [k.open_time for k in complete_minute_klines()]
    with FakeExchange(symbols=(SYMBOL,), initial_trades=0, first_id=trades[0]["id"]) as exchange:
        exchange.append(SYMBOL, trades=trades)
        good = {row[0]: row for row in exchange.klines(SYMBOL)}
        exchange.add_kline_fault(SYMBOL, minutes[0], "wrong")
        exchange.add_kline_fault(SYMBOL, minutes[1], "malformed", times=1)
        exchange.add_kline_fault(SYMBOL, minutes[2], "missing", times=1)
        first = _get(exchange, startTime=str(minutes[0]), limit="4").json()
        second = _get(exchange, startTime=str(minutes[0]), limit="4").json()
        weights = [r.weight for r in exchange.requests(KLINES_PATH)]
    assert [row[0] for row in first] == [minutes[0], minutes[1], minutes[3]]
    wrong = Kline.from_api(first[0])
    assert wrong.close - Kline.from_api(good[minutes[0]]).close == Decimal("0.01")
    assert isinstance(first[1][4], float)
    assert second[1:] == [good[m] for m in minutes[1:4]], "a fault with `times` runs out"
    assert weights == [2, 2]
