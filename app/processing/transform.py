"""Pure DataFrame transformations of the streaming job: validate, aggregate, encode for Kafka.

No session, source or sink here: each function maps a DataFrame to a DataFrame, so tests can feed
them any frame with the Kafka source's columns (key, value, topic, partition, offset).

Money stays exact. Prices and quantities arrive as decimal strings with at most 8 places; they
are turned into integer units of 10^-8 by string surgery (no cast of a fraction, no rounding), and
every sum is over integers in DECIMAL(38,0). Spark's decimal division rounds twice and its
precision-loss rule can cut the scale to 6, so VWAP is done as an integer division with an explicit
remainder and one half-to-even rounding step, exactly as `app.core.windows.vwap` does.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from app.common.schema import MAX_DECIMAL_PLACES

WINDOW_DURATION = "1 minute"
# Prices, VWAP and base volume carry 8 places; quote volume (price x qty) carries 16.
UNIT_SCALE = MAX_DECIMAL_PLACES
NOTIONAL_SCALE = 2 * MAX_DECIMAL_PLACES
# A trade whose price and quantity units have at most this many digits between them has a notional
# below 10^32 units, so a window can sum a million such trades before DECIMAL(38,0) could overflow.
MAX_NOTIONAL_DIGITS = 32
# timestamp_millis overflows (an error under ANSI mode) far beyond this; year 10000 is a safe bound.
MAX_TRADE_TIME_MS = 253_402_300_800_000

# Java regex; `\z` (unlike `$`) does not let a trailing newline through.
_DECIMAL_REGEX = r"^[0-9]{1,20}(\.[0-9]{1,8})?\z"
_INTEGER_TYPES = ("BIGINT",)


def _field(name: str) -> Column:
    return F.expr(f"try_variant_get(_json, '$.{name}', 'variant')")


def _type_of(name: str) -> Column:
    """The field's JSON type as Spark names it (STRING, BIGINT, DECIMAL(3,1), ...); null if absent."""
    return F.col(f"_{name}_type")


_TYPED_FIELDS = ("symbol", "trade_id", "trade_time", "is_buyer_maker", "price", "qty")


def _shown(name: str) -> Column:
    """The field as JSON text for a reason message, 'nothing' when it is absent."""
    return F.coalesce(F.to_json(_field(name)), F.lit("nothing"))


def _units(text: Column) -> Column:
    """A validated decimal string as an exact integer count of 10^-8 (DECIMAL(38,0))."""
    whole = F.split_part(text, F.lit("."), F.lit(1))
    fraction = F.split_part(text, F.lit("."), F.lit(2))
    digits = F.concat(whole, F.rpad(fraction, UNIT_SCALE, "0"))
    return digits.try_cast("decimal(38,0)")


def _decimal_checks(name: str) -> list[tuple[Column, Column]]:
    text = F.col(f"_{name}_text")
    units = F.col(f"{name}_units")
    return [
        (
            _type_of(name).isNull() | (_type_of(name) != "STRING"),
            F.concat(F.lit(f"{name} must be a decimal string, got "), _shown(name)),
        ),
        (
            ~text.rlike(_DECIMAL_REGEX),
            F.concat(
                F.lit(f"{name} is not a decimal with at most {MAX_DECIMAL_PLACES} places: "), _shown(name)
            ),
        ),
        (units <= 0, F.concat(F.lit(f"{name} must be positive, got "), text)),
    ]


def _int_checks(name: str, minimum: int) -> list[tuple[Column, Column]]:
    kind = _type_of(name)
    value = F.col(name)
    return [
        (
            kind.isNull() | ~kind.isin(*_INTEGER_TYPES),
            F.concat(F.lit(f"{name} must be an integer, got "), _shown(name)),
        ),
        (
            value < minimum,
            F.concat(F.lit(f"{name} must be >= {minimum}, got "), value.cast("string")),
        ),
    ]


def _reason(checks: list[tuple[Column, Column]]) -> Column:
    """The first failing check's reason, in the order `Trade.from_json` checks; null when valid."""
    first_bad, first_reason = checks[0]
    chain = F.when(first_bad, first_reason)
    for bad, reason in checks[1:]:
        chain = chain.when(bad, reason)
    return chain


def parse_trades(raw: DataFrame) -> DataFrame:
    """Kafka source rows -> one row per record with the trade's fields and `reason` (null = valid).

    Mirrors `Trade.from_json`: JSON object, symbol, trade_id, trade_time, is_buyer_maker, then
    price and qty as positive decimal strings with at most 8 places.
    """
    text = F.col("value").cast("string")
    with_json = raw.select(
        "key",
        "value",
        "topic",
        "partition",
        "offset",
        text.alias("_text"),
        F.when(F.is_valid_utf8(text), F.try_parse_json(text)).alias("_json"),
    )
    fields = with_json.select(
        "*",
        F.expr("try_variant_get(_json, '$.symbol', 'string')").alias("symbol"),
        F.expr("try_variant_get(_json, '$.trade_id', 'bigint')").alias("trade_id"),
        F.expr("try_variant_get(_json, '$.trade_time', 'bigint')").alias("trade_time"),
        F.expr("try_variant_get(_json, '$.price', 'string')").alias("_price_text"),
        F.expr("try_variant_get(_json, '$.qty', 'string')").alias("_qty_text"),
        # Each field's type once per row, as a column: the checks below read it several times.
        *(F.schema_of_variant(_field(name)).alias(f"_{name}_type") for name in _TYPED_FIELDS),
    )
    units = fields.select(
        "*",
        F.when(F.col("_price_text").rlike(_DECIMAL_REGEX), _units(F.col("_price_text"))).alias("price_units"),
        F.when(F.col("_qty_text").rlike(_DECIMAL_REGEX), _units(F.col("_qty_text"))).alias("qty_units"),
    )
    symbol_kind = _type_of("symbol")
    checks: list[tuple[Column, Column]] = [
        (F.col("value").isNull(), F.lit("not JSON: empty value")),
        (~F.is_valid_utf8(F.col("_text")), F.lit("not JSON: invalid UTF-8")),
        (F.col("_json").isNull(), F.lit("not JSON")),
        (~F.schema_of_variant(F.col("_json")).startswith("OBJECT"), F.lit("not a JSON object")),
        (
            symbol_kind.isNull() | (symbol_kind != "STRING") | (F.col("symbol") == ""),
            F.lit("symbol missing"),
        ),
        *_int_checks("trade_id", 0),
        *_int_checks("trade_time", 1),
        (
            F.col("trade_time") >= MAX_TRADE_TIME_MS,
            F.concat(F.lit("trade_time out of range, got "), F.col("trade_time").cast("string")),
        ),
        (
            _type_of("is_buyer_maker").isNull() | (_type_of("is_buyer_maker") != "BOOLEAN"),
            F.lit("is_buyer_maker must be a boolean"),
        ),
        *_decimal_checks("price"),
        *_decimal_checks("qty"),
        (
            F.length(F.col("price_units").cast("string")) + F.length(F.col("qty_units").cast("string"))
            > MAX_NOTIONAL_DIGITS,
            F.concat(
                F.lit("price x qty too large to aggregate exactly: "),
                F.col("_price_text"),
                F.lit(" x "),
                F.col("_qty_text"),
            ),
        ),
    ]
    return units.select(
        "key",
        "value",
        "topic",
        "partition",
        "offset",
        "symbol",
        "trade_id",
        "trade_time",
        "price_units",
        "qty_units",
        _reason(checks).alias("reason"),
    )


def split_valid(parsed: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(valid trades with event time, invalid records with their reason) of `parse_trades` output."""
    valid = parsed.where(F.col("reason").isNull()).select(
        "symbol",
        "trade_id",
        "trade_time",
        F.timestamp_millis(F.col("trade_time")).alias("event_time"),
        F.col("price_units").cast("decimal(28,0)").alias("price_units"),
        F.col("qty_units").cast("decimal(28,0)").alias("qty_units"),
    )
    invalid = parsed.where(F.col("reason").isNotNull()).select(
        "key", "value", "topic", "partition", "offset", "reason"
    )
    return valid, invalid


def dead_letter_records(invalid: DataFrame) -> DataFrame:
    """Invalid records -> Kafka (key, value) rows in the `DeadLetter` JSON layout, key kept as-is."""
    original = F.coalesce(F.make_valid_utf8(F.col("value").cast("string")), F.lit(""))
    payload = F.struct(
        F.col("reason"),
        F.col("topic"),
        F.col("partition").cast("int").alias("partition"),
        F.col("offset").cast("bigint").alias("offset"),
        original.alias("value"),
    )
    return invalid.select(F.col("key"), F.to_json(payload).alias("value"))


def aggregate_windows(trades: DataFrame, watermark_delay: str) -> DataFrame:
    """Valid trades -> one row per (symbol, 1-minute window) with exact integer-unit aggregates.

    Columns: symbol, window_start, window_end, last_trade_time (ms); open/high/low/close_units and
    base_units (10^-8), notional_units (10^-16), all DECIMAL(38,0) or narrower with scale 0;
    vwap_units (10^-8, rounded once half to even); trade_count, first/last_trade_id.
    """
    order = F.struct(F.col("trade_time"), F.col("trade_id"))
    grouped = (
        trades.withWatermark("event_time", watermark_delay)
        .groupBy(F.col("symbol"), F.window(F.col("event_time"), WINDOW_DURATION).alias("window"))
        .agg(
            F.min_by(F.col("price_units"), order).alias("open_units"),
            F.max(F.col("price_units")).alias("high_units"),
            F.min(F.col("price_units")).alias("low_units"),
            F.max_by(F.col("price_units"), order).alias("close_units"),
            F.sum(F.col("qty_units")).alias("base_units"),
            F.sum(F.col("price_units") * F.col("qty_units")).alias("notional_units"),
            F.count(F.lit(1)).alias("trade_count"),
            F.min(F.col("trade_id")).alias("first_trade_id"),
            F.max(F.col("trade_id")).alias("last_trade_id"),
            F.max(F.col("trade_time")).alias("last_trade_time"),
        )
    )
    return grouped.select(
        "symbol",
        F.unix_millis(F.col("window.start")).alias("window_start"),
        F.unix_millis(F.col("window.end")).alias("window_end"),
        "open_units",
        "high_units",
        "low_units",
        "close_units",
        "base_units",
        "notional_units",
        exact_quotient_half_even(F.col("notional_units"), F.col("base_units")).alias("vwap_units"),
        "trade_count",
        "first_trade_id",
        "last_trade_id",
        "last_trade_time",
    )


def exact_quotient_half_even(numerator: Column, denominator: Column) -> Column:
    """round_half_even(N / D) for positive integer decimals N, D, computed without any rounding.

    Spark's N / D is rounded to 6 places, so its floor is the true floor or one above it (never
    below: rounding a value >= f to 6 places cannot go under the integer f). The remainder
    r = N - q*D corrects that, then one half-to-even step on r against D - r gives the result.
    """
    guess = F.floor(numerator / denominator)
    remainder = numerator - guess * denominator
    quotient = F.when(remainder < 0, guess - 1).otherwise(guess)
    rest = F.when(remainder < 0, remainder + denominator).otherwise(remainder)
    other = denominator - rest
    round_up = (rest > other) | ((rest == other) & (quotient % 2 == 1))
    return (quotient + F.when(round_up, 1).otherwise(0)).cast("decimal(38,0)")


def format_units(units: Column, scale: int) -> Column:
    """An exact non-negative integer count of 10^-scale as a plain decimal string with `scale` places."""
    plain = units.cast("decimal(38,0)").cast("string")
    # lpad also truncates a longer string, so pad only the short ones.
    digits = F.when(F.length(plain) > scale, plain).otherwise(F.lpad(plain, scale + 1, "0"))
    cut = F.length(digits) - scale
    return F.concat(
        F.substring(digits, F.lit(1), cut), F.lit("."), F.substring(digits, cut + 1, F.lit(scale))
    )


def window_records(windows: DataFrame, *, is_final: bool) -> DataFrame:
    """Aggregated windows -> Kafka (key, value) rows; value is exactly `WindowStats.to_json()`'s layout."""
    prices = {
        name: format_units(F.col(f"{name}_units"), UNIT_SCALE) for name in ("open", "high", "low", "close")
    }
    payload = F.struct(
        F.col("symbol"),
        F.col("window_start"),
        F.col("window_end"),
        prices["open"].alias("open"),
        prices["high"].alias("high"),
        prices["low"].alias("low"),
        prices["close"].alias("close"),
        format_units(F.col("vwap_units"), UNIT_SCALE).alias("vwap"),
        format_units(F.col("base_units"), UNIT_SCALE).alias("base_volume"),
        format_units(F.col("notional_units"), NOTIONAL_SCALE).alias("quote_volume"),
        F.col("trade_count"),
        F.col("first_trade_id"),
        F.col("last_trade_id"),
        F.col("last_trade_time"),
        F.lit(is_final).alias("is_final"),
    )
    key = F.concat(F.col("symbol"), F.lit("|"), F.col("window_start").cast("string"))
    return windows.select(key.alias("key"), F.to_json(payload).alias("value"))
