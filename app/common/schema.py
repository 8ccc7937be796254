"""The pipeline's contracts: every record that crosses a process boundary, defined once.

Each record is a frozen dataclass with its own JSON encoding and decoding. The process that writes a
topic and every process (or test) that reads it use the same class, so a field is named in one place.

Prices and quantities travel as decimal strings and are parsed into `Decimal`, never float.
Times are integer milliseconds since the Unix epoch (UTC), as Binance reports them.

Topics
  raw trades     key = symbol (UTF-8), value = `Trade` JSON, Kafka timestamp = trade time
  aggregates     key = "<symbol>|<window_start ms>", value = `WindowStats` JSON (upserts)
  dead letters   key = the bad record's key, value = `DeadLetter` JSON
  metrics        key = the source ("producer", "spark", "reconcile"), value = `ProducerMetric` /
                 `SparkMetric` / `ReconcileMetric` JSON
  reconciliation key = "<symbol>|<window_start ms>", value = `Reconciliation` JSON

What a valid trade is lives in one ordered table, `TRADE_RULES`. `Trade.from_json` follows it here,
the producer checks what it reads from Binance with the same rules (`field_value`), and the Spark
job builds its checks from it (app/processing/transform.py): the first failing rule decides, and its
reason text is the dead letter's reason. tests/processing/test_validation_agreement.py runs one
corpus through both languages.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from decimal import Decimal
from enum import Enum, StrEnum, auto
from functools import cache
from string import Formatter
from typing import Any, ClassVar, TypeVar

# Binance quotes every price and quantity with at most 8 decimal places; 20 whole digits keep its
# count of 10^-8 units within DECIMAL(28,0), the type the Spark job aggregates prices in.
MAX_DECIMAL_PLACES = 8
MAX_WHOLE_DIGITS = 20
# quoteQty is price x qty, which can carry more places than either factor.
QUOTE_QTY_DIGITS = 30
QUOTE_QTY_PLACES = 20
# A trade whose price and quantity units (10^-8) have at most this many digits between them has a
# notional below 10^32 units, so a window can sum a million such trades before DECIMAL(38,0) could
# overflow in the Spark job.
MAX_NOTIONAL_DIGITS = 32
# Spark's timestamp_millis overflows (an error under ANSI mode) far beyond this; year 10000 is a
# safe bound, and no exchange will date a trade after it.
MAX_TRADE_TIME_MS = 253_402_300_800_000
# The Spark job reads integers as LONG: a JSON integer outside it is not an integer to the job.
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def now_ms() -> int:
    """The wall clock in the wire format's unit: milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


class RecordError(ValueError):
    """A record that does not follow its contract; for a trade the message is the dead-letter reason."""


# ----------------------------------------------------------------------------- trade validation


class Check(Enum):
    """What one rule checks. Each kind has one Python case (`_breaks` below) and one Spark column
    (`_bad` in app/processing/transform.py); both say when a record breaks the rule, and mypy
    holds both matches exhaustive."""

    PRESENT = auto()  # the Kafka value is not empty (a tombstone)
    UTF8 = auto()  # the value is valid UTF-8
    JSON = auto()  # the text is JSON (as Spark's parse_json reads it: the first value, no duplicate keys)
    OBJECT = auto()  # the JSON is an object
    NON_EMPTY_STRING = auto()  # the field is a non-empty JSON string
    INTEGER = auto()  # the field is a JSON integer within a signed 64-bit long
    AT_LEAST = auto()  # the integer field is >= bound
    BELOW = auto()  # the integer field is < bound
    BOOLEAN = auto()  # the field is true or false
    STRING = auto()  # the field is a JSON string
    DECIMAL_TEXT = auto()  # the string is a plain decimal: 1..digits digits, then optionally 1..places places
    POSITIVE = auto()  # the decimal string is above zero
    NOTIONAL = auto()  # price and qty in units of 10^-8 have at most bound digits between them


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the trade-validation table.

    `reason` is the dead-letter reason, a template whose placeholders are filled from the record:
    {shown} is the field as JSON text ("nothing" when absent), {text} the field's value as text, and
    any other name a wire field's value as text (e.g. {price}).
    """

    field: str  # the wire field it reads; "" for the record as a whole
    check: Check
    reason: str
    bound: int = 0
    digits: int = 0
    places: int = 0

    @property
    def pattern(self) -> str:
        """The DECIMAL_TEXT regular expression (the same syntax in Python and Java)."""
        return f"[0-9]{{1,{self.digits}}}(\\.[0-9]{{1,{self.places}}})?"

    def placeholders(self) -> list[str]:
        return [name for _, name, _, _ in Formatter().parse(self.reason) if name]


def _integer_rules(name: str, at_least: int) -> tuple[Rule, ...]:
    return (
        Rule(name, Check.INTEGER, f"{name} must be an integer, got {{shown}}"),
        Rule(name, Check.AT_LEAST, f"{name} must be >= {at_least}, got {{text}}", bound=at_least),
    )


def _decimal_rules(name: str, digits: int, places: int) -> tuple[Rule, ...]:
    return (
        Rule(name, Check.STRING, f"{name} must be a decimal string, got {{shown}}"),
        Rule(
            name,
            Check.DECIMAL_TEXT,
            f"{name} is not a decimal with at most {places} places: {{shown}}",
            digits=digits,
            places=places,
        ),
    )


# The order is the order of the checks: a record's reason is that of the first rule it breaks.
TRADE_RULES: tuple[Rule, ...] = (
    Rule("", Check.PRESENT, "not JSON: empty value"),
    Rule("", Check.UTF8, "not JSON: invalid UTF-8"),
    Rule("", Check.JSON, "not JSON"),
    Rule("", Check.OBJECT, "not a JSON object"),
    Rule("symbol", Check.NON_EMPTY_STRING, "symbol missing"),
    *_integer_rules("trade_id", at_least=0),
    *_integer_rules("trade_time", at_least=1),
    Rule("trade_time", Check.BELOW, "trade_time out of range, got {text}", bound=MAX_TRADE_TIME_MS),
    Rule("is_buyer_maker", Check.BOOLEAN, "is_buyer_maker must be a boolean"),
    *_decimal_rules("price", MAX_WHOLE_DIGITS, MAX_DECIMAL_PLACES),
    Rule("price", Check.POSITIVE, "price must be positive, got {text}"),
    *_decimal_rules("qty", MAX_WHOLE_DIGITS, MAX_DECIMAL_PLACES),
    Rule("qty", Check.POSITIVE, "qty must be positive, got {text}"),
    Rule(
        "",
        Check.NOTIONAL,
        "price x qty too large to aggregate exactly: {price} x {qty}",
        bound=MAX_NOTIONAL_DIGITS,
    ),
    # quote_qty is Binance's own rounding of price x qty: the job never aggregates it, but it is
    # part of the trade every reader gets, so it is checked for form (not recomputed, zero allowed)
    # the same way everywhere: here, in the Spark job and in the producer. Checked last, so that a
    # record breaking an older rule keeps the reason it always had.
    *_decimal_rules("quote_qty", QUOTE_QTY_DIGITS, QUOTE_QTY_PLACES),
)
# Carried by the wire but checked by no rule: when the producer read the trade, used only to
# measure latency. A missing or non-integer one reads as 0 and never costs a trade.
UNCHECKED_TRADE_FIELDS = ("ingest_time",)

_MISSING = object()
_NOT_JSON = object()


@dataclass(frozen=True, slots=True)
class _Number:
    """A JSON number with a fraction or exponent, kept as written: never a float, never money."""

    text: str


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate key")  # Spark's parse_json refuses them too
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(
    parse_float=_Number, parse_constant=_no_constant, object_pairs_hook=_no_duplicate_keys
)


def _parse_first_value(text: str) -> Any:
    """The first JSON value of `text`, ignoring whatever follows it, as Spark's parse_json does."""
    try:
        document, _ = _DECODER.raw_decode(text, len(text) - len(text.lstrip(" \t\n\r")))
    except (ValueError, RecursionError):
        return _NOT_JSON
    return document


@dataclass(slots=True)  # not frozen: one is built per record and per checked field; frozen is slower
class _Reading:
    """One raw value, read as far as it goes: text None = absent or not UTF-8."""

    raw: bytes | str | None
    text: str | None
    document: Any
    fields: dict[str, Any]  # the document when it is an object, else empty

    @classmethod
    def of(cls, raw: bytes | str | None) -> _Reading:
        if raw is None:
            return cls(raw, None, _NOT_JSON, {})
        try:
            text = raw if isinstance(raw, str) else raw.decode("utf-8")
        except UnicodeDecodeError:
            return cls(raw, None, _NOT_JSON, {})
        document = _parse_first_value(text)
        return cls(raw, text, document, document if isinstance(document, dict) else {})

    def get(self, name: str) -> Any:
        return self.fields.get(name, _MISSING)


def _is_long(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and _LONG_MIN <= value <= _LONG_MAX


_NON_ZERO_DIGIT = re.compile("[1-9]")


def _units_digits(text: str) -> int:
    """Digits of a valid decimal string as an integer count of 10^-8 (as the Spark job counts them)."""
    whole, _, fraction = text.partition(".")
    return len(str(int(whole + fraction.ljust(MAX_DECIMAL_PLACES, "0"))))


def _breaks(rule: Rule) -> Callable[[_Reading], bool]:
    """Whether a reading breaks the rule; each case assumes the rules before it held. Built once per
    rule (`_TRADE_CHECKS`): a valid record runs every rule, so the dispatch is not paid per record."""
    name, bound = rule.field, rule.bound
    match rule.check:
        case Check.PRESENT:
            return lambda r: r.raw is None
        case Check.UTF8:
            return lambda r: r.text is None
        case Check.JSON:
            return lambda r: r.document is _NOT_JSON
        case Check.OBJECT:
            return lambda r: not isinstance(r.document, dict)
        case Check.NON_EMPTY_STRING:
            return lambda r: not (isinstance(r.get(name), str) and r.get(name))
        case Check.INTEGER:
            return lambda r: not _is_long(r.get(name))
        case Check.AT_LEAST:
            return lambda r: bool(r.get(name) < bound)
        case Check.BELOW:
            return lambda r: bool(r.get(name) >= bound)
        case Check.BOOLEAN:
            return lambda r: not isinstance(r.get(name), bool)
        case Check.STRING:
            return lambda r: not isinstance(r.get(name), str)
        case Check.DECIMAL_TEXT:
            form = re.compile(rule.pattern)
            return lambda r: not form.fullmatch(r.get(name))
        case Check.POSITIVE:
            return lambda r: not _NON_ZERO_DIGIT.search(r.get(name))
        case Check.NOTIONAL:
            return lambda r: _units_digits(r.get("price")) + _units_digits(r.get("qty")) > bound


def _double_text(value: float) -> str:
    """A double as Java's Double.toString writes it (Spark renders JSON doubles so)."""
    if value != value or value in (float("inf"), float("-inf")):
        return json.dumps("Infinity" if value > 0 else "-Infinity")
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return repr(value)
    sign, digits, _ = Decimal(repr(value)).normalize().as_tuple()
    exponent = Decimal(repr(value)).adjusted()
    mantissa = "".join(map(str, digits))
    return f"{'-' if sign else ''}{mantissa[0]}.{mantissa[1:] or '0'}E{exponent}"


def _number_text(text: str) -> str:
    """A JSON fraction as Spark's variant keeps it: DECIMAL (no trailing zeros) when it fits, else DOUBLE."""
    number = Decimal(text)
    if "e" in text.lower() or len(number.as_tuple().digits) > 38:
        return _double_text(float(number))
    if number.is_zero():
        return "0"
    return format(number.normalize(), "f")


def _shown(value: Any) -> str:
    """A JSON value as Spark's to_json(variant) writes it, for reason texts; 'nothing' if absent."""
    if value is _MISSING:
        return "nothing"
    if isinstance(value, _Number):
        return _number_text(value.text)
    if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) > 38:
        return _double_text(float(value))
    if isinstance(value, dict):
        return "{" + ",".join(f"{_shown(k)}:{_shown(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_shown(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _reason(rule: Rule, reading: _Reading) -> str:
    context: dict[str, str] = {}
    for name in rule.placeholders():
        if name == "shown":
            context[name] = _shown(reading.get(rule.field))
        else:
            context[name] = str(reading.get(rule.field if name == "text" else name))
    return rule.reason.format_map(context)


_Checks = tuple[tuple[Rule, Callable[[_Reading], bool]], ...]
_TRADE_CHECKS: _Checks = tuple((rule, _breaks(rule)) for rule in TRADE_RULES)


def _first_broken(checks: _Checks, reading: _Reading) -> None:
    for rule, breaks in checks:
        if breaks(reading):
            raise RecordError(_reason(rule, reading))


@cache
def _checks_of(name: str) -> _Checks:
    checks = tuple((rule, breaks) for rule, breaks in _TRADE_CHECKS if rule.field == name)
    if not checks:
        raise KeyError(f"no trade rule reads {name!r}")
    return checks


def field_value(name: str, value: object) -> Any:
    """`value` if it passes every rule of the trade field `name`, else RecordError with the reason
    `Trade.from_json` would give: for writers that build a `Trade` from another format."""
    _first_broken(_checks_of(name), _Reading("", "", {name: value}, {name: value}))
    return value


def decimal_value(name: str, value: object) -> Decimal:
    """A decimal field of a trade (price, qty, quote_qty), checked by its rules."""
    return Decimal(field_value(name, value))


def _plain(number: Decimal) -> str:
    """A decimal as the wire writes it: never in exponent form (str() writes 0.00000010 as 1.0E-7),
    with the places it has, so a decimal string read from the wire is written back unchanged."""
    return format(number, "f")


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
                "price": _plain(self.price),
                "qty": _plain(self.qty),
                "quote_qty": _plain(self.quote_qty),
                "trade_time": self.trade_time,
                "is_buyer_maker": self.is_buyer_maker,
                "ingest_time": self.ingest_time,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> Trade:
        """Parse and validate one raw-topic value by `TRADE_RULES`; RecordError says which rule broke."""
        reading = _Reading.of(raw)
        _first_broken(_TRADE_CHECKS, reading)
        ingest_time = reading.get("ingest_time")
        return cls(
            trade_id=reading.get("trade_id"),
            symbol=reading.get("symbol"),
            price=Decimal(reading.get("price")),
            qty=Decimal(reading.get("qty")),
            quote_qty=Decimal(reading.get("quote_qty")),
            trade_time=reading.get("trade_time"),
            is_buyer_maker=reading.get("is_buyer_maker"),
            ingest_time=ingest_time if _is_long(ingest_time) else 0,
        )


# ----------------------------------------------------------------------------------- aggregates


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
            payload[item.name] = _plain(value) if isinstance(value, Decimal) else value
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


# ------------------------------------------------------------------------------- reconciliation


class ReconcileStatus(StrEnum):
    MATCHED = "matched"  # every compared field equals the exchange's kline
    MISMATCHED = "mismatched"  # some field differs: trades were lost, doubled or changed
    UNAVAILABLE = "unavailable"  # no usable kline after every retry: not checked, never a match


@dataclass(frozen=True, slots=True)
class FieldDifference:
    """One field of a final window that differs from the exchange's kline, exactly."""

    field: str  # the WindowStats field name
    pipeline: Decimal
    exchange: Decimal

    @property
    def difference(self) -> Decimal:
        """Pipeline minus exchange."""
        return self.pipeline - self.exchange


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """A final window checked against the exchange's 1-minute kline (app/reconcile)."""

    symbol: str
    window_start: int  # ms, the kline's open time
    status: ReconcileStatus
    differences: tuple[FieldDifference, ...] = ()
    reason: str = ""  # why a kline was unavailable
    checked_at: int = 0  # ms since epoch

    @property
    def key(self) -> str:
        return window_key(self.symbol, self.window_start)

    def to_json(self) -> bytes:
        return _encode(
            {
                "symbol": self.symbol,
                "window_start": self.window_start,
                "status": self.status.value,
                "differences": [
                    {"field": d.field, "pipeline": _plain(d.pipeline), "exchange": _plain(d.exchange)}
                    for d in self.differences
                ],
                "reason": self.reason,
                "checked_at": self.checked_at,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Reconciliation:
        payload = _json_object(raw, "reconciliation")
        try:
            status = ReconcileStatus(_as_str("status", payload.get("status")))
            differences = tuple(
                FieldDifference(_as_str("field", d["field"]), Decimal(d["pipeline"]), Decimal(d["exchange"]))
                for d in payload.get("differences", [])
            )
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            raise RecordError(f"reconciliation is malformed: {exc!r}") from None
        return cls(
            symbol=_as_str("symbol", payload.get("symbol")),
            window_start=_as_int("window_start", payload.get("window_start")),
            status=status,
            differences=differences,
            reason=_as_str("reason", payload.get("reason", "")),
            checked_at=_as_int("checked_at", payload.get("checked_at", 0)),
        )


# ---------------------------------------------------------------------- plain records: decoding


def _json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
        if isinstance(payload, dict):
            return payload
    except ValueError as exc:  # bad JSON, or bytes that are not UTF-8
        raise RecordError(f"{what} is not JSON: {exc}") from None
    raise RecordError(f"{what} is not a JSON object")


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{name} must be an integer, got {value!r}")
    return value


def _as_optional_int(name: str, value: Any) -> int | None:
    return None if value is None else _as_int(name, value)


def _as_optional_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{name} must be a number, got {value!r}")
    return float(value)


def _as_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{name} must be a string, got {value!r}")
    return value


def _as_counts(name: str, value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(f"{name} must be an object of counts, got {value!r}")
    return {str(kind): _as_int(f"{name}.{kind}", n) for kind, n in value.items()}


# Field annotations (as written: this module postpones annotations) -> how to read that JSON value.
_DECODERS: dict[str, Callable[[str, Any], Any]] = {
    "int": _as_int,
    "int | None": _as_optional_int,
    "float | None": _as_optional_float,
    "str": _as_str,
    "Mapping[str, int]": _as_counts,
}

_Record = TypeVar("_Record")


def _decode(cls: type[_Record], payload: Mapping[str, Any]) -> _Record:
    """A dataclass from a JSON object: a missing field takes its default (a required one is an
    error), a present one must have the field's type."""
    values: dict[str, Any] = {}
    for item in fields(cls):  # type: ignore[arg-type]
        if item.name in payload:
            values[item.name] = _DECODERS[str(item.type)](item.name, payload[item.name])
        elif item.default is MISSING and item.default_factory is MISSING:
            raise RecordError(f"{item.name} missing")
    return cls(**values)


def _encode(payload: Mapping[str, Any]) -> bytes:
    # Non-ASCII as UTF-8, not escaped: the Spark job's to_json writes dead letters so.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A raw record the Spark job could not use, with the reason (a `TRADE_RULES` reason text)."""

    reason: str
    topic: str
    partition: int
    offset: int
    value: str  # the original bytes, decoded as UTF-8 with replacement

    def to_json(self) -> bytes:
        return _encode(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeadLetter:
        return _decode(cls, _json_object(raw, "dead letter"))


@dataclass(frozen=True, slots=True)
class LateTrade:
    """A valid trade that arrived after the watermark had closed its window: the trade as it arrived
    (`value`, with where it was read from) and the window it missed. Keyed `symbol|trade_id`."""

    symbol: str
    trade_id: int
    window_start: int  # ms, the window the trade belongs to, already final
    window_end: int
    watermark: int  # ms, the job's watermark when the trade was read
    topic: str
    partition: int
    offset: int
    value: str

    @property
    def key(self) -> str:
        return f"{self.symbol}|{self.trade_id}"

    def to_json(self) -> bytes:
        return _encode(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> LateTrade:
        return _decode(cls, _json_object(raw, "late trade"))


# ---------------------------------------------------------------------------------- the metrics


@dataclass(frozen=True, slots=True)
class ProducerMetric:
    """The producer's report; its counters are cumulative since the producer started."""

    SOURCE: ClassVar[str] = "producer"

    time: int = 0  # ms since epoch, when the report was made
    trades_published: int = 0
    polls: int = 0
    gaps_backfilled: int = 0
    unrecoverable_gaps: int = 0  # trade-id gaps the producer could not backfill: trades lost
    http_errors: Mapping[str, int] = field(default_factory=dict)  # by kind (5xx, timeout, ...)
    rate_limited_429: int = 0
    banned_418: int = 0
    used_weight_1m: int = 0
    budget_per_minute: int = 0
    producer_rebuilds: int = 0
    # The binance_ws source: (re)connections, and frames dropped (not a trade, a symbol not
    # subscribed, an id not above the previous frame's).
    stream_connects: int = 0
    stream_malformed_frames: int = 0
    stream_unknown_symbol_frames: int = 0
    stream_out_of_order_frames: int = 0

    @property
    def errors(self) -> int:
        """HTTP errors of every kind, 429 and 418 answers included."""
        return sum(self.http_errors.values()) + self.rate_limited_429 + self.banned_418

    def counters(self) -> Iterator[tuple[str, int]]:
        """(name, value) of every integer counter: each field but the time and the error kinds."""
        for item in fields(self):
            if item.name not in ("time", "http_errors"):
                yield item.name, getattr(self, item.name)

    def to_json(self) -> bytes:
        return _encode({"source": self.SOURCE} | asdict(self))

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ProducerMetric:
        return _decode(cls, payload)


@dataclass(frozen=True, slots=True)
class SparkMetric:
    """One streaming query's micro-batch (see app/processing/metrics.py for how it is measured)."""

    SOURCE: ClassVar[str] = "spark"

    query: str = ""
    batch_id: int = 0
    time: int = 0  # ms since epoch, when the batch started
    num_input_rows: int = 0
    watermark: int | None = None  # ms since epoch; None before the first event
    input_rows_per_second: float | None = None
    processed_rows_per_second: float | None = None
    batch_duration_ms: int | None = None
    state_rows: int = 0

    def to_json(self) -> bytes:
        return _encode({"source": self.SOURCE} | asdict(self))

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SparkMetric:
        return _decode(cls, payload)


@dataclass(frozen=True, slots=True)
class SparkLedger:
    """Where one symbol's raw records went, cumulative since the job's checkpoint began (records of
    no valid symbol are under symbol ""). Conservation: records = final_trades + open_trades + late
    + dead_letters + duplicates. Amounts are decimal strings."""

    SOURCE: ClassVar[str] = "spark-ledger"

    symbol: str = ""
    time: int = 0  # ms since epoch, when the batch that changed it ran
    records: int = 0
    final_trades: int = 0
    final_windows: int = 0
    open_trades: int = 0
    late: int = 0
    late_base_volume: str = "0"
    late_quote_volume: str = "0"
    dead_letters: int = 0
    conflicts: int = 0
    duplicates: int = 0

    @property
    def accounted(self) -> int:
        """Records with a final destination: everything but the trades of still-open windows."""
        return self.final_trades + self.late + self.dead_letters + self.duplicates

    @property
    def key(self) -> bytes:
        return f"{self.SOURCE}|{self.symbol}".encode()

    def to_json(self) -> bytes:
        return _encode({"source": self.SOURCE} | asdict(self))

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SparkLedger:
        return _decode(cls, payload)


@dataclass(frozen=True, slots=True)
class ReconcileMetric:
    """The reconciler's report; its counters are cumulative since it started."""

    SOURCE: ClassVar[str] = "reconcile"

    time: int = 0  # ms since epoch, when the report was made
    kline_requests: int = 0
    weight_spent: int = 0  # request weight of those requests
    klines_missing: int = 0  # a requested complete minute the answer did not hold
    klines_malformed: int = 0  # a kline row (or a whole answer) that could not be read
    http_errors: int = 0  # 429, 418, 5xx, timeouts and refused connections
    retries: int = 0  # minutes asked for again after one of the above
    matched: int = 0
    mismatched: int = 0
    unavailable: int = 0
    used_weight_1m: int = 0  # the exchange's count for this IP, the producer's weight included
    budget_per_minute: int = 0

    def to_json(self) -> bytes:
        return _encode({"source": self.SOURCE} | asdict(self))

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ReconcileMetric:
        return _decode(cls, payload)


Metric = ProducerMetric | SparkMetric | SparkLedger | ReconcileMetric


def metric_from_json(key: bytes | None, raw: bytes | str) -> Metric | None:
    """A metrics-topic record by its source (the payload's, else the key); None for a source this
    version does not know. RecordError (a ValueError) for anything that is not a valid metric."""
    payload = _json_object(raw, "metric")
    source = payload.get("source") or (key.decode() if key else "")
    for kind in (ProducerMetric, SparkMetric, SparkLedger, ReconcileMetric):
        if source == kind.SOURCE:
            return kind.from_payload(payload)
    return None
