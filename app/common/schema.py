"""Wire format of the pipeline's Kafka topics, shared by every process.

Prices and quantities travel as decimal strings and are parsed into `Decimal`, never float.
Times are integer milliseconds since the Unix epoch (UTC), as Binance reports them.

Topics
  raw trades     key = symbol (UTF-8), value = `Trade` JSON, Kafka timestamp = trade time
  aggregates     key = "<symbol>|<window_start ms>", value = `WindowStats` JSON (upserts)
  dead letters   key = the bad record's key, value = `DeadLetter` JSON
  metrics        key = "<source>", value = metric JSON (see app/processing)
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any

# Binance quotes every price and quantity with at most 8 decimal places.
MAX_DECIMAL_PLACES = 8
_DECIMAL_TEXT = re.compile(r"[0-9]{1,20}(\.[0-9]{1,8})?")


def now_ms() -> int:
    """The wall clock in the wire format's unit: milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


class RecordError(ValueError):
    """A record that does not follow the wire format; the message is the dead-letter reason."""


def parse_positive_decimal(value: object, name: str) -> Decimal:
    """Parse a decimal string as Binance writes it ("67000.01000000"); reject anything else."""
    if not isinstance(value, str):
        raise RecordError(f"{name} must be a decimal string, got {type(value).__name__}")
    if not _DECIMAL_TEXT.fullmatch(value):
        raise RecordError(f"{name} is not a decimal with at most {MAX_DECIMAL_PLACES} places: {value!r}")
    number = Decimal(value)
    if number <= 0:
        raise RecordError(f"{name} must be positive, got {value}")
    return number


def _require_int(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{name} must be an integer, got {value!r}")
    return value


def _quote_qty(value: object) -> Decimal:
    # Informational (Binance's own rounding of price*qty): checked for form, not recomputed.
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise RecordError(f"quote_qty is not a decimal: {value!r}") from None


@dataclass(frozen=True, slots=True)
class Trade:
    trade_id: int
    symbol: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    trade_time: int  # ms since epoch, the event time
    is_buyer_maker: bool
    ingest_time: int = 0  # ms since epoch, when the producer read it

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "trade_id": self.trade_id,
                "symbol": self.symbol,
                "price": str(self.price),
                "qty": str(self.qty),
                "quote_qty": str(self.quote_qty),
                "trade_time": self.trade_time,
                "is_buyer_maker": self.is_buyer_maker,
                "ingest_time": self.ingest_time,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> Trade:
        """Parse and validate one raw-topic value; raises RecordError with the reason."""
        if raw is None:
            raise RecordError("no value")
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RecordError(f"not JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from None
        if not isinstance(payload, dict):
            raise RecordError("not a JSON object")
        symbol = payload.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise RecordError("symbol missing")
        trade_id = _require_int(payload, "trade_id")
        if trade_id < 0:
            raise RecordError(f"trade_id must be >= 0, got {trade_id}")
        trade_time = _require_int(payload, "trade_time")
        if trade_time <= 0:
            raise RecordError(f"trade_time must be positive, got {trade_time}")
        is_buyer_maker = payload.get("is_buyer_maker")
        if not isinstance(is_buyer_maker, bool):
            raise RecordError("is_buyer_maker must be a boolean")
        ingest_time = payload.get("ingest_time", 0)
        return cls(
            trade_id=trade_id,
            symbol=symbol,
            price=parse_positive_decimal(payload.get("price"), "price"),
            qty=parse_positive_decimal(payload.get("qty"), "qty"),
            quote_qty=_quote_qty(payload.get("quote_qty", "0")),
            trade_time=trade_time,
            is_buyer_maker=is_buyer_maker,
            ingest_time=ingest_time if isinstance(ingest_time, int) else 0,
        )


@dataclass(frozen=True, slots=True)
class WindowStats:
    """One symbol's 1-minute window. `is_final` is true once the watermark has passed its end."""

    symbol: str
    window_start: int  # ms, inclusive
    window_end: int  # ms, exclusive
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    vwap: Decimal
    base_volume: Decimal
    quote_volume: Decimal
    trade_count: int
    first_trade_id: int
    last_trade_id: int
    last_trade_time: int
    is_final: bool = False

    @property
    def key(self) -> str:
        return window_key(self.symbol, self.window_start)

    def to_json(self) -> bytes:
        payload: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            payload[item.name] = str(value) if isinstance(value, Decimal) else value
        return json.dumps(payload, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> WindowStats:
        payload = json.loads(raw)
        decimals = {"open", "high", "low", "close", "vwap", "base_volume", "quote_volume"}
        values: dict[str, Any] = {
            item.name: Decimal(payload[item.name]) if item.name in decimals else payload[item.name]
            for item in fields(cls)
            if item.name in payload
        }
        return cls(**values)


def window_key(symbol: str, window_start: int) -> str:
    return f"{symbol}|{window_start}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    topic: str
    partition: int
    offset: int
    value: str  # the original bytes, decoded as UTF-8 with replacement

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "reason": self.reason,
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "value": self.value,
            },
            separators=(",", ":"),
        ).encode()
