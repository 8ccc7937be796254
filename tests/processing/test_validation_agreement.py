"""One corpus of raw values through `Trade.from_json` and the real Spark `parse_trades`: every value
is accepted by both, or rejected by both with the same reason (both directions, one table)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from string import Formatter

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from app.common.schema import (
    MAX_TRADE_TIME_MS,
    TRADE_RULES,
    UNCHECKED_TRADE_FIELDS,
    DeadLetter,
    RecordError,
    Rule,
    Trade,
)
from app.common.settings import Settings
from app.processing import job, transform
from tests.common.test_schema import GOOD
from tests.support.kafka import create_topics, unique_topic, write_raw

_ABSENT = object()
# json.dumps's default separators, and none (as the producer writes records): the corpus is written
# both ways, so that its values in the producer's form also take the job's producer-form path.
SPACED, COMPACT = (", ", ": "), (",", ":")


def _with(separators: tuple[str, str] = SPACED, **changes: object) -> bytes:
    payload = {k: v for k, v in (GOOD | changes).items() if v is not _ABSENT}
    return json.dumps(payload, ensure_ascii=False, separators=separators).encode()


def _text_with(separators: tuple[str, str], name: str, json_text: str) -> bytes:
    """GOOD with one field's JSON written by hand (numbers json.dumps would not write as given)."""
    return _with(separators, **{name: "@@"}).replace(b'"@@"', json_text.encode())


def _field_confusions(separators: tuple[str, str]) -> list[tuple[str, bytes | None]]:
    cases: list[tuple[str, bytes | None]] = []
    for name in ("symbol", "trade_id", "trade_time", "is_buyer_maker", "price", "qty", "quote_qty"):
        for label, json_text in [
            ("missing", None),
            ("null", "null"),
            ("true", "true"),
            ('"true"', '"true"'),
            ("1.5", "1.5"),
            ('"1.5"', '"1.5"'),
            ("1", "1"),
            ('"1"', '"1"'),
            ("1.0", "1.0"),
            ("1e5", "1e5"),
            ("1.5e300", "1.5e300"),
            ("1e400", "1e400"),
            ("object", '{"b": 1, "a": [1.50, "x", -0.0]}'),
            ("array", "[1, 2]"),
            ('""', '""'),
        ]:
            value = (
                _with(separators, **{name: _ABSENT})
                if json_text is None
                else _text_with(separators, name, json_text)
            )
            cases.append((f"{name} = {label}", value))
    return cases


def _corpus(separators: tuple[str, str]) -> list[tuple[str, bytes | None]]:
    """(what it is, the raw Kafka value)"""
    return [
        ("good", _with(separators)),
        ("good, no ingest_time", _with(separators, ingest_time=_ABSENT)),
        ("good, ingest_time garbage (unchecked)", _with(separators, ingest_time="soon")),
        ("good, unknown extra field", _with(separators, venue="binance")),
        ("good, leading and trailing whitespace", b" \n" + _with(separators) + b"\t "),
        ("good, then trailing text (parse_json reads the first value)", _with(separators) + b"x"),
        ("good, then a second object", _with(separators) + b' {"a": 1}'),
        ("good, unicode symbol", _with(separators, symbol="BTC\u00e9\u2028")),
        (
            "good, tiny decimals",
            _with(separators, price="0.00000001", qty="0.00000010", quote_qty="0.00000000"),
        ),
        # the record as a whole
        ("tombstone", None),
        ("empty value", b""),
        ("only whitespace", b"  \n"),
        ("not JSON", b"this is not json"),
        ("invalid UTF-8", b'{"symbol": "BTC\xff\xfe"}'),
        ("overlong UTF-8", b'{"symbol": "\xc0\xaf"}'),
        ("UTF-8-encoded surrogate", b'{"symbol": "\xed\xa0\x80"}'),
        ("byte order mark", b"\xef\xbb\xbf" + _with(separators)),
        ("NaN", _text_with(separators, "price", "NaN")),
        ("duplicate key", _with(separators)[:-1] + b', "trade_id": 8}'),
        ("raw control character", _with(separators, symbol="A\x01B").replace(b"\\u0001", b"\x01")),
        ("escaped NUL in a string", _with(separators, price="\x00")),
        ("truncated", _with(separators)[:-5]),
        ("array", b"[1, 2, 3]"),
        ("array of objects", b'[{"a": 1}]'),
        ("array after whitespace", b" \t\r\n[1]"),
        ("number", b"1"),
        ("string", b'"trade"'),
        ("null", b"null"),
        ("true", b"true"),
        # boundaries of the numeric rules
        ("trade_id -1", _with(separators, trade_id=-1)),
        ("trade_id 0", _with(separators, trade_id=0)),
        ("trade_id at the long limit", _with(separators, trade_id=2**63 - 1)),
        ("trade_id past the long limit", _with(separators, trade_id=2**63)),
        ("trade_id far past the long limit", _with(separators, trade_id=10**40)),
        ("trade_time 0", _with(separators, trade_time=0)),
        ("trade_time 1", _with(separators, trade_time=1)),
        ("trade_time just below the bound", _with(separators, trade_time=MAX_TRADE_TIME_MS - 1)),
        ("trade_time at the bound", _with(separators, trade_time=MAX_TRADE_TIME_MS)),
        ("trade_time -1", _with(separators, trade_time=-1)),
        ("price smallest", _with(separators, price="0.00000001")),
        ("price zero", _with(separators, price="0.00000000")),
        ("price zero, no fraction", _with(separators, price="0")),
        ("qty zero", _with(separators, qty="0")),
        ("price 20 integer digits", _with(separators, price="9" * 20, qty="0.000001")),
        ("price 21 integer digits", _with(separators, price="9" * 21)),
        ("price 8 places", _with(separators, price="1.12345678")),
        ("price 9 places", _with(separators, price="1.123456789")),
        ("price -1.5", _with(separators, price="-1.5")),
        ("price +1.5", _with(separators, price="+1.5")),
        ("price .5", _with(separators, price=".5")),
        ("price 5.", _with(separators, price="5.")),
        ("price 1,5", _with(separators, price="1,5")),
        ("price with a space", _with(separators, price=" 1.5")),
        ("price with a trailing newline", _with(separators, price="1.5\n")),
        ("price in full-width digits", _with(separators, price="\uff11")),
        ("price leading zeros", _with(separators, price="00012.5")),
        ("notional 32 digits", _with(separators, price="9" * 20, qty="0.00001")),
        ("notional 33 digits", _with(separators, price="9" * 20, qty="0.0001")),
        (
            "notional too large, large qty",
            _with(separators, price="99999999999999999999.5", qty="99999999999.0"),
        ),
        # quote_qty: Binance's decimal string, checked for form only
        ("quote_qty lots", _with(separators, quote_qty="lots")),
        ("quote_qty zero", _with(separators, quote_qty="0")),
        ("quote_qty 20 places", _with(separators, quote_qty="1." + "1" * 20)),
        ("quote_qty 21 places", _with(separators, quote_qty="1." + "1" * 21)),
        ("quote_qty 30 digits", _with(separators, quote_qty="9" * 30)),
        ("quote_qty 31 digits", _with(separators, quote_qty="9" * 31)),
        ("quote_qty negative", _with(separators, quote_qty="-8.04")),
        ("quote_qty exponent", _with(separators, quote_qty="1e5")),
        # more than one fault: the first rule in table order decides
        ("symbol and price both bad", _with(separators, symbol="", price="x")),
        ("price bad and quote_qty bad", _with(separators, price="0", quote_qty="lots")),
        *_field_confusions(separators),
    ]


CORPUS = [
    (f"{what}{'' if separators == SPACED else ', compact'}", value)
    for separators in (SPACED, COMPACT)
    for what, value in _corpus(separators)
]


def python_reason(value: bytes | None) -> str | None:
    try:
        Trade.from_json(value)
    except RecordError as exc:
        return str(exc)
    return None


def kafka_rows(spark: SparkSession, values: list[bytes | None]) -> DataFrame:
    """`values` as the Kafka source's rows, each at the offset of its index."""
    return spark.createDataFrame(
        [(b"k", value, "raw", 0, offset) for offset, value in enumerate(values)],
        "key binary, value binary, topic string, partition int, offset long",
    )


def spark_rows(
    spark: SparkSession, bootstrap: str, checkpoint: Path
) -> tuple[dict[int, str | None], dict[int, bytes]]:
    """(reason by offset, dead-letter value by offset) of the corpus through the job's transforms."""
    frame = kafka_rows(spark, [value for _, value in CORPUS])
    parsed = transform.parse_trades(frame).cache()
    reasons = {r.offset: r.reason for r in parsed.select("offset", "reason").collect()}
    # The dead letters as the job's stateful step writes them: it runs on streams only, so the corpus
    # goes through a topic of one partition, where its offsets are its indexes.
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        raw_topic=unique_topic("agreement_raw"),
        starting_offsets="earliest",
    )
    create_topics(bootstrap, [settings.raw_topic])
    write_raw(bootstrap, settings.raw_topic, [(b"k", value, None) for _, value in CORPUS])
    records = transform.ledger_input(transform.parse_trades(job.kafka_source(spark, settings)), "0 seconds")
    query = (
        job.route(records, settings)
        .writeStream.format("memory")
        .queryName("agreement_routed")
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    routed = spark.table("agreement_routed").where(F.col("topic") == settings.dead_letter_topic).collect()
    by_offset = {}
    for row in routed:
        letter = DeadLetter.from_json(row.value)
        assert letter.topic == settings.raw_topic
        by_offset[letter.offset] = row.value.encode()
    return reasons, by_offset


def broken_rule(reason: str | None) -> Rule | None:
    """The table row whose reason template produced `reason`."""
    if reason is None:
        return None
    for rule in TRADE_RULES:
        template = Formatter().parse(rule.reason)
        parts = [re.escape(literal) + (".*" if name else "") for literal, name, _, _ in template]
        if re.fullmatch("".join(parts), reason, re.DOTALL):
            return rule
    raise AssertionError(f"no rule gives the reason {reason!r}")


def test_python_and_spark_accept_and_reject_the_same_records_for_the_same_reason(
    spark: SparkSession, bootstrap: str, tmp_path: Path
) -> None:
    reasons, letters = spark_rows(spark, bootstrap, tmp_path / "checkpoint")
    assert len(reasons) == len(CORPUS)
    disagreements = []
    for offset, (what, value) in enumerate(CORPUS):
        if python_reason(value) != reasons[offset]:
            disagreements.append(f"{what}: Python {python_reason(value)!r}, Spark {reasons[offset]!r}")
    assert disagreements == []
    for offset, reason in reasons.items():
        if reason is not None:  # the dead letter decodes to the same layout and reason
            letter = DeadLetter.from_json(letters[offset])
            assert letter.to_json() == letters[offset]
            assert (letter.reason, letter.offset) == (reason, offset)


def test_the_corpus_breaks_every_rule_and_passes_them_all() -> None:
    broken = [broken_rule(python_reason(value)) for _, value in CORPUS]
    assert None in broken
    missed = [rule for rule in TRADE_RULES if rule not in broken]
    assert missed == []


def test_the_table_checks_every_field_a_trade_carries_on_the_wire() -> None:
    wire = set(json.loads(Trade.from_json(_with()).to_json()))
    assert wire == {item.name for item in dataclasses.fields(Trade)}
    checked = {rule.field for rule in TRADE_RULES if rule.field}
    assert checked | set(UNCHECKED_TRADE_FIELDS) == wire
    assert not checked & set(UNCHECKED_TRADE_FIELDS)


def test_every_accepted_trade_is_written_back_as_it_was_read() -> None:
    accepted = [value for _, value in CORPUS if value is not None and python_reason(value) is None]
    assert len(accepted) > 10
    for value in accepted:
        trade = Trade.from_json(value)
        written = json.loads(trade.to_json())
        read = json.loads(_parse_first(value))
        for name in ("price", "qty", "quote_qty"):  # every place kept; only leading zeros go
            whole, dot, fraction = read[name].partition(".")
            assert written[name] == (whole.lstrip("0") or "0") + dot + fraction, (name, value)
        for name in ("symbol", "trade_id", "trade_time", "is_buyer_maker"):
            assert written[name] == read[name], (name, value)
        assert Trade.from_json(trade.to_json()) == trade


def _parse_first(value: bytes) -> str:
    """The first JSON value of a raw record (some corpus values carry text after it)."""
    text = value.decode().strip()
    document, _ = json.JSONDecoder().raw_decode(text)
    return json.dumps(document)


def test_the_producers_records_are_read_in_its_form(spark: SparkSession) -> None:
    """Trades as `Trade.to_json` writes them take the producer-form path (and the compact corpus
    above tries it with every rule); the spaced corpus never does."""
    written = [
        _with(COMPACT),
        Trade.from_json(_with()).to_json(),
        Trade.from_json(_with(trade_id=0)).to_json(),
    ]
    frame = spark.createDataFrame([(value,) for value in [*written, _with()]], "value binary")
    in_form = frame.select(F.col("value").cast("string").rlike(transform.PRODUCER_FORM)).collect()
    assert [row[0] for row in in_form] == [True, True, True, False]


def test_the_stateful_step_quotes_every_record_as_it_arrived(spark: SparkSession) -> None:
    """The shuffle to the stateful step carries a valid trade in the producer's form without its raw
    text (transform.ledger_input), and a late trade or a conflict quotes the record put back together
    (java/telemetry/WireForm.java): for every record, that must be the record as it arrived. A "-0",
    which a long does not print back, is among them."""
    negative_zeros = [_text_with(COMPACT, name, "-0") for name in ("trade_id", "ingest_time")]
    parsed = transform.parse_trades(
        kafka_rows(spark, [value for _, value in CORPUS] + negative_zeros)
    ).cache()
    arrived = {row.offset: row.value for row in parsed.select("offset", "value").collect()}
    records = transform.ledger_input(parsed, "0 seconds")
    without_text = records.where(F.col("value").isNull()).count()
    assert without_text > 10
    quoted = spark._jvm.telemetry.WireForm.rawValues(  # type: ignore[union-attr]
        records._jdf, *transform.wire_form()
    )
    assert {row.offset: row.value for row in DataFrame(quoted, spark).collect()} == arrived
