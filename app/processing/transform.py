"""Pure DataFrame transformations of the streaming job: parse and validate each raw record once.

No session, source or sink here: each function maps a DataFrame to a DataFrame, so tests can feed
them any frame with the Kafka source's columns (key, value, topic, partition, offset). The frame's
session needs the job's jar (session.job_jars), whose PatternGroups reads the producer's form.

Money stays exact. Prices and quantities arrive as decimal strings with at most 8 places; they
are turned into integer units of 10^-8 by string surgery (no cast of a fraction, no rounding) and
handed to the stateful step (app/processing/java/telemetry/LedgerProcessor.java) as decimal
text, which sums them as exact integers (Java's BigInteger).
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from string import Formatter

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from app.common.schema import MAX_DECIMAL_PLACES, TRADE_RULES, Check, Rule, Trade

UNIT_SCALE = MAX_DECIMAL_PLACES

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


def _wire_type(name: str) -> str:
    return next(_TYPE_OF_CHECK[r.check] for r in TRADE_RULES if r.field == name and r.check in _TYPE_OF_CHECK)


def _wire_value(name: str) -> tuple[str, bool]:
    """The pattern of what the producer writes for the field's value, in a form every rule of the
    field's type accepts, and whether the value is quoted (the pattern is of the text between)."""
    rules = {r.check: r for r in TRADE_RULES if r.field == name}
    if Check.DECIMAL_TEXT in rules:
        return rules[Check.DECIMAL_TEXT].pattern, True
    if Check.NON_EMPTY_STRING in rules or Check.STRING in rules:
        # Printable ASCII but '"' and '\\': no escape, no control character, no invalid UTF-8.
        return ("[ !#-\\[\\]-~]+" if Check.NON_EMPTY_STRING in rules else "[ !#-\\[\\]-~]*"), True
    if Check.BOOLEAN in rules:
        return "true|false", False
    # An integer that fits a long (the unchecked ingest_time too), as a long prints it: no "-0", so
    # that the stateful step can write a record back from the value it read (WIRE_SOURCES).
    return "0|-?[1-9][0-9]{0,17}", False


def _wire_literals() -> tuple[str, ...]:
    """The text around the values in the producer's form: before the first value, between each two,
    after the last. A record in that form is these with its values between them."""
    literals, closing = [], ""
    for index, item in enumerate(dataclass_fields(Trade)):
        _, quoted = _wire_value(item.name)
        literals.append(closing + ("{" if index == 0 else ",") + f'"{item.name}":' + ('"' if quoted else ""))
        closing = '"' if quoted else ""
    return (*literals, closing + "}")


WIRE_LITERALS = _wire_literals()
# The fields that ledger_input's rows carry as columns of the same name (the integers as longs); the
# others travel in `wire_values`.
_CARRIED_FIELDS = ("symbol", "trade_id", "trade_time")
# Each field's column, or "" for the next of the wire values, in the fields' order.
WIRE_SOURCES = tuple(item.name if item.name in _CARRIED_FIELDS else "" for item in dataclass_fields(Trade))
# Joins the values in `wire_values` (and, for the processor, WIRE_LITERALS and WIRE_SOURCES): no value
# in the producer's form (printable ASCII), no literal and no column name has a line break.
WIRE_SEPARATOR = "\n"


def wire_form() -> tuple[str, str, str]:
    """The producer's form as java/telemetry/WireForm.java takes it: the separator, then WIRE_LITERALS
    and WIRE_SOURCES joined by it."""
    return WIRE_SEPARATOR, WIRE_SEPARATOR.join(WIRE_LITERALS), WIRE_SEPARATOR.join(WIRE_SOURCES)


def _java_literal(text: str) -> str:
    return text.replace("{", "\\{").replace("}", "\\}")


# A record as `Trade.to_json` writes it: its keys in its order, no whitespace, each value of the
# type and form its rules ask, in the named group g<index> (Java's syntax). One match of this pattern
# reads every field, as text, into the `_producer` struct (java/telemetry/PatternGroups.java):
# profiled on a replay, reading them after the match with Spark's string functions was a fifth of the
# tasks' time with a split at the quotes and three fifths with substring_index per field (from_json,
# before both, a sixth). Any other text (another writer, a bad record) takes the variant path, which
# tells every way a record can be wrong; both feed the same checks.
PRODUCER_FORM = (
    "^"
    + "".join(
        _java_literal(literal) + f"(?<g{index}>{_wire_value(item.name)[0]})"
        for index, (literal, item) in enumerate(zip(WIRE_LITERALS[:-1], dataclass_fields(Trade), strict=True))
    )
    + _java_literal(WIRE_LITERALS[-1])
    + "\\z"
)


def _with_producer_fields(frame: DataFrame) -> DataFrame:
    """`frame` with `_producer`: `_text`'s fields if it is in the producer's form, else null."""
    spark = frame.sparkSession
    names = ",".join(item.name for item in dataclass_fields(Trade))
    groups = spark._jvm.telemetry.PatternGroups.withGroups(  # type: ignore[union-attr]
        frame._jdf, "_text", "_producer", PRODUCER_FORM, names
    )
    return DataFrame(groups, spark)


def _producer_value(name: str, sql_type: str) -> Column:
    text = F.col("_producer").getField(name)
    return text if sql_type == "string" else text.cast(sql_type)


def _in_producer_form() -> Column:
    return F.col("_producer").isNotNull()


def _unless_in_producer_form(broken: Column) -> Column:
    """A check the producer's form already passes (UTF-8, JSON, an object, decimal strings of the
    rules' form): not evaluated for a record in that form."""
    return ~_in_producer_form() & broken


def _variant_as(name: str, sql_type: str) -> Column:
    return F.expr(f"try_variant_get(_json, '$.{name}', '{sql_type}')")


def _read(name: str, sql_type: str) -> Column:
    """The field as `sql_type`: from the split text for a record in the producer's form, else from
    the variant (null when absent or not convertible)."""
    return F.when(_in_producer_form(), _producer_value(name, sql_type)).otherwise(_variant_as(name, sql_type))


def _field(name: str) -> Column:
    return _variant_as(name, "variant")


def _units_of(name: str) -> Column:
    """A decimal field in units of 10^-8 once its text has the form its rule asks for, else null."""
    form = next(r for r in TRADE_RULES if r.field == name and r.check is Check.DECIMAL_TEXT)
    text = F.col(f"_{name}_text")
    return F.when(_in_producer_form() | text.rlike(_java_regex(form)), _units(text))


def _type_of(name: str) -> Column:
    """The field's JSON type as Spark names it (STRING, BIGINT, DECIMAL(3,1), ...); null if absent."""
    return F.col(f"_{name}_type")


def _value_text(name: str) -> Column:
    """The field's value as text: an integer field's digits, a string field's string."""
    return F.col(name).cast("string") if name in _INTEGER_FIELDS else F.col(f"_{name}_text")


def _units(text: Column) -> Column:
    """A validated decimal string as its exact count of 10^-8, in digits without leading zeros ("" for
    zero, which the positive rule refuses). Text, not a decimal: the processor reads it as a
    BigInteger, and a DECIMAL(38,0) between costs a parse and a format per field and record."""
    # Not split_part: Spark splits by a regular expression, compiled anew for every row (about a fifth
    # of the tasks' time on a replay, profiled). substring_index finds the point as bytes.
    whole = F.substring_index(text, ".", 1)
    fraction = F.when(text.contains("."), F.substring_index(text, ".", -1)).otherwise(F.lit(""))
    return F.ltrim(F.concat(whole, F.rpad(fraction, UNIT_SCALE, "0")), F.lit("0"))


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
            return _unless_in_producer_form(~F.is_valid_utf8(F.col("_text")))
        case Check.JSON:
            return _unless_in_producer_form(F.col("_json").isNull())
        case Check.OBJECT:
            # Of text already known to be JSON: an object iff its first character after JSON's
            # whitespace is "{". Asking the parsed value (schema_of_variant) builds its whole
            # schema, 3.5 us a record: most of the validation's cost.
            return _unless_in_producer_form(~F.col("_text").rlike(r"^[ \t\n\r]*\{"))
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
            return _unless_in_producer_form(~F.col(f"_{name}_text").rlike(_java_regex(rule)))
        case Check.POSITIVE:
            # Of a string already known to be a plain decimal: above zero iff any digit is not 0.
            return ~F.col(f"_{name}_text").rlike("[1-9]")
        case Check.NOTIONAL:
            return F.length(F.col("price_units")) + F.length(F.col("qty_units")) > rule.bound


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
    """Kafka source rows -> one row per record with its value as text, the trade's fields and
    `reason` (null = valid).

    The checks are built from `app.common.schema.TRADE_RULES`, the table `Trade.from_json` follows.
    """
    text = F.col("value").cast("string")
    with_text = raw.select("key", "value", "topic", "partition", "offset", text.alias("_text"))
    with_form = _with_producer_fields(with_text)
    other_form = ~_in_producer_form()
    with_json = with_form.select(
        "*",
        F.when(other_form & F.is_valid_utf8(F.col("_text")), F.try_parse_json(F.col("_text"))).alias("_json"),
    )
    fields = with_json.select(
        "*",
        *(_read(name, "bigint").alias(name) for name in _INTEGER_FIELDS),
        *(_read(name, "string").alias(f"_{name}_text") for name in _TEXT_FIELDS),
        # Each field's type once per row, as a column: the checks read it several times.
        *(
            F.when(other_form, F.schema_of_variant(_field(name)))
            .otherwise(_wire_type(name))
            .alias(f"_{name}_type")
            for name in _RULE_FIELDS
        ),
    )
    units = fields.select("*", _units_of("price").alias("price_units"), _units_of("qty").alias("qty_units"))
    return units.select(
        "key",
        _raw_text().alias("value"),
        "topic",
        "partition",
        "offset",
        F.col("_symbol_text").alias("symbol"),
        "trade_id",
        "trade_time",
        "price_units",
        "qty_units",
        _content_hash().alias("fingerprint"),
        _reason(TRADE_RULES).alias("reason"),
        _wire_values().alias("wire_values"),
    )


def _raw_text() -> Column:
    """The raw value as the late-trades and dead-letter rows quote it: text, invalid UTF-8 replaced,
    "" for none. Text in the producer's form is printable ASCII (its pattern admits nothing else), so
    it is taken as it is rather than checked byte by byte again."""
    return F.when(_in_producer_form(), F.col("_text")).otherwise(
        F.coalesce(F.make_valid_utf8(F.col("_text")), F.lit(""))
    )


def _wire_values() -> Column:
    """A record in the producer's form as the values ledger_input does not carry otherwise, joined
    (null for any other record): with the others and WIRE_LITERALS they are the record
    (java/telemetry/WireForm.java)."""
    fields = zip(dataclass_fields(Trade), WIRE_SOURCES, strict=True)
    values = (F.col("_producer").getField(item.name) for item, source in fields if not source)
    return F.when(_in_producer_form(), F.concat_ws(WIRE_SEPARATOR, *values))


def _content_hash() -> Column:
    """A hash of what the exchange says about the trade (not when the producer read it): two
    deliveries of one trade id with different hashes are a conflict, with equal ones a duplicate."""
    return F.xxhash64(
        F.col("trade_time"),
        F.col("price_units"),
        F.col("qty_units"),
        F.col("_quote_qty_text"),
        _read("is_buyer_maker", "boolean"),
    )


def ledger_input(parsed: DataFrame, watermark_delay: str) -> DataFrame:
    """`parse_trades` output -> the stateful step's input: every record, grouped by `symbol` (""
    for a record that breaks a rule), with the watermark on the trades' event time.

    The event-time column is dropped after `withWatermark`: the query still tracks the watermark
    (timers fire by it), but Spark no longer filters rows older than it before the processor sees
    them. That filter would drop late trades silently; the processor routes them instead.

    A valid trade in the producer's form comes without its raw text, which only a late trade or a
    conflict quotes (the processor puts it back together from `wire_values`, java/telemetry/
    WireForm.java): the text was over half of the bytes the shuffle moved to the processor's one task.
    On a 1,000,000-trade replay (four runs each, in turns), the parsing tasks took 17.5 s instead of
    19.4 s and the processor's 3.5 s instead of 4.0 s.
    """
    valid = F.col("reason").isNull()
    compact = valid & F.col("wire_values").isNotNull()
    with_watermark = parsed.withColumn(
        "event_time", F.when(valid, F.timestamp_millis(F.col("trade_time")))
    ).withWatermark("event_time", watermark_delay)
    return with_watermark.select(
        F.when(valid, F.col("symbol")).otherwise(F.lit("")).alias("symbol"),
        F.col("partition").cast("int").alias("partition"),
        F.col("offset").cast("bigint").alias("offset"),
        "key",
        F.when(~compact, F.col("value")).alias("value"),
        "reason",
        "trade_id",
        "trade_time",
        "price_units",
        "qty_units",
        "fingerprint",
        F.when(compact, F.col("wire_values")).alias("wire_values"),
    )
