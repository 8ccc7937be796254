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

from string import Formatter

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from app.common.schema import MAX_DECIMAL_PLACES, TRADE_RULES, Check, Rule

WINDOW_DURATION = "1 minute"
# Prices, VWAP and base volume carry 8 places; quote volume (price x qty) carries 16.
UNIT_SCALE = MAX_DECIMAL_PLACES
NOTIONAL_SCALE = 2 * MAX_DECIMAL_PLACES

# The JSON types (as schema_of_variant names them) that each kind of rule needs.
_TYPE_OF_CHECK = {
    Check.NON_EMPTY_STRING: "STRING",
    Check.STRING: "STRING",
    Check.INTEGER: "BIGINT",
    Check.BOOLEAN: "BOOLEAN",
}
_RULE_FIELDS = tuple(dict.fromkeys(rule.field for rule in TRADE_RULES if rule.field))
_INTEGER_FIELDS = tuple(dict.fromkeys(r.field for r in TRADE_RULES if r.check is Check.INTEGER))
_TEXT_FIELDS = tuple(
    dict.fromkeys(r.field for r in TRADE_RULES if r.check in (Check.STRING, Check.NON_EMPTY_STRING))
)


def _variant_as(name: str, sql_type: str) -> Column:
    return F.expr(f"try_variant_get(_json, '$.{name}', '{sql_type}')")


def _field(name: str) -> Column:
    return _variant_as(name, "variant")


def _units_of(name: str) -> Column:
    """A decimal field in units of 10^-8 once its text has the form its rule asks for, else null."""
    form = next(r for r in TRADE_RULES if r.field == name and r.check is Check.DECIMAL_TEXT)
    text = F.col(f"_{name}_text")
    return F.when(text.rlike(_java_regex(form)), _units(text))


def _type_of(name: str) -> Column:
    """The field's JSON type as Spark names it (STRING, BIGINT, DECIMAL(3,1), ...); null if absent."""
    return F.col(f"_{name}_type")


def _value_text(name: str) -> Column:
    """The field's value as text: an integer field's digits, a string field's string."""
    return F.col(name).cast("string") if name in _INTEGER_FIELDS else F.col(f"_{name}_text")


def _units(text: Column) -> Column:
    """A validated decimal string as an exact integer count of 10^-8 (DECIMAL(38,0))."""
    whole = F.split_part(text, F.lit("."), F.lit(1))
    fraction = F.split_part(text, F.lit("."), F.lit(2))
    digits = F.concat(whole, F.rpad(fraction, UNIT_SCALE, "0"))
    return digits.try_cast("decimal(38,0)")


def _java_regex(rule: Rule) -> str:
    # `\z` (unlike `$`) does not let a trailing newline through.
    return f"^{rule.pattern}\\z"


def _bad(rule: Rule) -> Column:
    """The Spark form of the rule's check (`_breaks` in app.common.schema is the Python form)."""
    name = rule.field
    match rule.check:
        case Check.PRESENT:
            return F.col("value").isNull()
        case Check.UTF8:
            return ~F.is_valid_utf8(F.col("_text"))
        case Check.JSON:
            return F.col("_json").isNull()
        case Check.OBJECT:
            return ~F.schema_of_variant(F.col("_json")).startswith("OBJECT")
        case Check.NON_EMPTY_STRING | Check.STRING | Check.INTEGER | Check.BOOLEAN:
            wrong_type = _type_of(name).isNull() | (_type_of(name) != _TYPE_OF_CHECK[rule.check])
            if rule.check is Check.NON_EMPTY_STRING:
                return wrong_type | (F.col(f"_{name}_text") == "")
            return wrong_type
        case Check.AT_LEAST:
            return F.col(name) < rule.bound
        case Check.BELOW:
            return F.col(name) >= rule.bound
        case Check.DECIMAL_TEXT:
            return ~F.col(f"_{name}_text").rlike(_java_regex(rule))
        case Check.POSITIVE:
            # Of a string already known to be a plain decimal: above zero iff any digit is not 0.
            return ~F.col(f"_{name}_text").rlike("[1-9]")
        case Check.NOTIONAL:
            return (
                F.length(F.col("price_units").cast("string")) + F.length(F.col("qty_units").cast("string"))
                > rule.bound
            )


def _reason_text(rule: Rule) -> Column:
    """The rule's reason with its placeholders filled from the row, as `Trade.from_json` fills them."""
    parts: list[Column] = []
    for literal, name, _, _ in Formatter().parse(rule.reason):
        if literal:
            parts.append(F.lit(literal))
        if name == "shown":
            parts.append(F.coalesce(F.to_json(_field(rule.field)), F.lit("nothing")))
        elif name:
            parts.append(_value_text(rule.field if name == "text" else name))
    return F.concat(*parts) if len(parts) > 1 else parts[0]


def _reason(rules: tuple[Rule, ...]) -> Column:
    """The first broken rule's reason, in `TRADE_RULES` order; null when the record is valid."""
    chain = F.when(_bad(rules[0]), _reason_text(rules[0]))
    for rule in rules[1:]:
        chain = chain.when(_bad(rule), _reason_text(rule))
    return chain


def parse_trades(raw: DataFrame) -> DataFrame:
    """Kafka source rows -> one row per record with the trade's fields and `reason` (null = valid).

    The checks are built from `app.common.schema.TRADE_RULES`, the table `Trade.from_json` follows.
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
        *(_variant_as(name, "bigint").alias(name) for name in _INTEGER_FIELDS),
        *(_variant_as(name, "string").alias(f"_{name}_text") for name in _TEXT_FIELDS),
        # Each field's type once per row, as a column: the checks read it several times.
        *(F.schema_of_variant(_field(name)).alias(f"_{name}_type") for name in _RULE_FIELDS),
    )
    units = fields.select("*", _units_of("price").alias("price_units"), _units_of("qty").alias("qty_units"))
    return units.select(
        "key",
        "value",
        "topic",
        "partition",
        "offset",
        F.col("_symbol_text").alias("symbol"),
        "trade_id",
        "trade_time",
        "price_units",
        "qty_units",
        _reason(TRADE_RULES).alias("reason"),
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
