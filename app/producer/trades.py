"""Pure parsing and validation of Binance trades (REST JSON and public-data CSV) and gap logic."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.common.schema import RecordError, Trade, decimal_value, field_value

# Binance spot public-data files give microseconds since 2025, milliseconds before. Any
# millisecond timestamp before the year 5138 is below this; any microsecond one after 1973 above.
_MICROSECONDS_FROM = 100_000_000_000_000
CSV_COLUMNS = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match")


def trade_from_binance(payload: object, symbol: str, ingest_time: int) -> Trade:
    """One element of /api/v3/trades or /api/v3/historicalTrades; RecordError says what is wrong.

    Each field is checked by the raw topic's own rules (app.common.schema.TRADE_RULES), with the
    reason texts the Spark job would give.
    """
    if not isinstance(payload, dict):
        raise RecordError(f"trade is not a JSON object: {payload!r}")
    return Trade(
        trade_id=field_value("trade_id", payload.get("id")),
        symbol=symbol,
        price=decimal_value("price", payload.get("price")),
        qty=decimal_value("qty", payload.get("qty")),
        quote_qty=decimal_value("quote_qty", payload.get("quoteQty")),
        trade_time=field_value("trade_time", payload.get("time")),
        is_buyer_maker=field_value("is_buyer_maker", payload.get("isBuyerMaker")),
        ingest_time=ingest_time,
    )


def trades_from_body(body: bytes, symbol: str, ingest_time: int) -> list[Trade]:
    """A whole response body: a JSON array of trades in strictly ascending id order."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"response is not JSON: {exc}") from None
    if not isinstance(payload, list):
        raise RecordError(f"response is not a JSON array: {str(payload)[:200]}")
    trades = [trade_from_binance(item, symbol, ingest_time) for item in payload]
    check_ascending(trades)
    return trades


def check_ascending(trades: Sequence[Trade]) -> None:
    for before, after in itertools.pairwise(trades):
        if after.trade_id <= before.trade_id:
            raise RecordError(f"trade ids not ascending: {before.trade_id} then {after.trade_id}")


def time_to_ms(value: int) -> int:
    """A public-data timestamp in ms or us (spot files since 2025) as ms."""
    return value // 1000 if value >= _MICROSECONDS_FROM else value


def _csv_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise RecordError(f"{name} must be True or False, got {value!r}")


def trade_from_csv(row: Sequence[str], symbol: str) -> Trade:
    """One row of a Binance public-data trades CSV (no header); ingest_time is set when sent."""
    if len(row) != len(CSV_COLUMNS):
        raise RecordError(f"expected {len(CSV_COLUMNS)} columns ({','.join(CSV_COLUMNS)}), got {len(row)}")
    try:
        trade_id = int(row[0])
        raw_time = int(row[4])
    except ValueError as exc:
        raise RecordError(f"id and time must be integers: {exc}") from None
    return Trade(
        trade_id=field_value("trade_id", trade_id),
        symbol=symbol,
        price=decimal_value("price", row[1]),
        qty=decimal_value("qty", row[2]),
        quote_qty=decimal_value("quote_qty", row[3]),
        trade_time=field_value("trade_time", time_to_ms(raw_time)),
        is_buyer_maker=_csv_bool(row[5], "is_buyer_maker"),
    )


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one /api/v3/trades answer means given the last id already published."""

    new: list[Trade]
    # Set when trades are missing between the last id and the oldest returned one: the ids
    # [missing_from, missing_to] must be fetched with historicalTrades before `new` is valid.
    missing_from: int | None = None
    missing_to: int | None = None


def classify_poll(last_id: int | None, trades: Sequence[Trade]) -> PollOutcome:
    """New trades after `last_id`, or the id range a back-fill has to cover first.

    On a fresh start (`last_id` None) the latest trades are taken as they are: no deep history.
    """
    if last_id is None:
        return PollOutcome(new=list(trades))
    if trades and trades[0].trade_id > last_id + 1:
        return PollOutcome(new=[], missing_from=last_id + 1, missing_to=trades[0].trade_id - 1)
    return PollOutcome(new=[t for t in trades if t.trade_id > last_id])


def release_horizon_ms(published_to_ms: Iterable[int | None], lead_ms: int) -> int | None:
    """Newest trade time that may be published now: each symbol has published every trade up to
    its `published_to_ms`, and no symbol may run more than `lead_ms` ahead of the least advanced
    one. The streaming job's watermark is shared by all symbols, so a symbol that ran further ahead
    would make the others' older trades late. None = nothing is known yet, nothing holds back."""
    known = [t for t in published_to_ms if t is not None]
    return min(known) + lead_ms if known else None


def releasable(pending: Sequence[Trade], horizon_ms: int | None) -> int:
    """How many of `pending` (ascending ids) may go out: the prefix up to the first trade past the
    horizon, so ids stay in order."""
    if horizon_ms is None:
        return len(pending)
    for count, trade in enumerate(pending):
        if trade.trade_time > horizon_ms:
            return count
    return len(pending)


def take_releasable(queues: Iterable[list[Trade]], horizon_ms: int | None) -> list[Trade]:
    """Take out of the first of `queues` (one symbol's trades each, ascending ids) that has any the
    trades `releasable` lets out now; the others wait for a later call."""
    for queue in queues:
        count = releasable(queue, horizon_ms)
        if count:
            batch = queue[:count]
            del queue[:count]
            return batch
    return []


def trade_from_stream(frame: str | bytes, ingest_time: int) -> Trade:
    """One message of a combined `<symbol>@trade` stream: `{"stream": ..., "data": {trade event}}`.

    The trade event has no quoteQty: it is price x qty, computed exactly. RecordError says what
    is wrong with a frame that is not such a trade.
    """
    try:
        message = json.loads(frame)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"frame is not JSON: {exc}") from None
    event = message.get("data") if isinstance(message, dict) else None
    if not isinstance(event, dict) or event.get("e") != "trade":
        raise RecordError(f"frame is not a trade event: {str(message)[:200]}")
    symbol = event.get("s")
    if not isinstance(symbol, str) or not symbol:
        raise RecordError(f"trade event without a symbol: {str(event)[:200]}")
    price = decimal_value("price", event.get("p"))
    qty = decimal_value("qty", event.get("q"))
    return Trade(
        trade_id=field_value("trade_id", event.get("t")),
        symbol=symbol,
        price=price,
        qty=qty,
        quote_qty=decimal_value("quote_qty", format((price * qty).normalize(), "f")),
        trade_time=field_value("trade_time", event.get("T")),
        is_buyer_maker=field_value("is_buyer_maker", event.get("m")),
        ingest_time=ingest_time,
    )
