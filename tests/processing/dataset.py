"""A small, deterministic raw-topic data set that exercises every case of the streaming job.

The raw topic has one partition and the job reads it `BATCH` offsets per trigger, so micro-batch
boundaries are fixed by offsets, not by timing: two runs over the same records (one interrupted by
SIGKILL, one not) see the same batches and must produce the same final windows.

Records in offset order:
  A  on-time trades in minutes 0-2 of several symbols, reordered by up to 8 s (inside the 10 s
     watermark), with rounding ties and 8-place prices; bad records interleaved
  B  one BTC trade at minute 4:30, the last record of its batch: the watermark becomes 4:20
  C  one batch of on-time ETH trades at 4:21-4:59, so the late trades come at least one batch
     after B has moved the watermark
  D  late trades in windows that ended before 4:20, (with `repeats`) second deliveries of B and C
     trades, then one BTC trade at 6:30: the watermark becomes 6:20 and minute 4 closes, minute 6
     stays open
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from decimal import Decimal

from app.common.schema import Trade

BATCH = 20
WATERMARK = "10 seconds"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a window boundary
MINUTE = 60_000
SECOND = 1_000
Q8 = Decimal("0.00000001")


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    trade: Trade | None = None  # set for valid trades
    late: bool = False  # a valid trade whose window is final when it is read
    repeat: str | None = None  # "duplicate" (same content) or "conflict" (other content) of a trade id


def _trade(symbol: str, trade_id: int, at_ms: int, price: str, qty: str) -> Trade:
    p, q = Decimal(price).quantize(Q8), Decimal(qty).quantize(Q8)
    return Trade(
        trade_id=trade_id,
        symbol=symbol,
        price=p,
        qty=q,
        quote_qty=(p * q).quantize(Q8),
        trade_time=at_ms,
        is_buyer_maker=trade_id % 2 == 0,
        ingest_time=at_ms,
    )


def _record(trade: Trade, *, late: bool = False) -> Record:
    return Record(trade.symbol.encode(), trade.to_json(), trade.trade_time, trade, late)


def _raw(value: bytes | None) -> Record:
    return Record(b"bad", value, T0)


def _bad_json(**fields: object) -> bytes:
    good = json.loads(_trade("BTCUSDT", 1, T0, "1", "1").to_json())
    for name, value in fields.items():
        if value is _MISSING:
            del good[name]
        else:
            good[name] = value
    return json.dumps(good).encode()


_MISSING = object()

# (value, the start of the reason the job must give); every one of these is a RecordError for
# Trade.from_json too, except where the job is deliberately stricter (see the test).
BAD_RECORDS: list[tuple[bytes | None, str]] = [
    (b"this is not json", "not JSON"),
    (b'{"symbol": "BTC\xff\xfe"}', "not JSON: invalid UTF-8"),
    (None, "not JSON: empty value"),
    (b"[1, 2, 3]", "not a JSON object"),
    (_bad_json(symbol=_MISSING), "symbol missing"),
    (_bad_json(symbol=""), "symbol missing"),
    (_bad_json(trade_id="12"), "trade_id must be an integer"),
    (_bad_json(trade_id=1.5), "trade_id must be an integer"),
    (_bad_json(trade_id=-1), "trade_id must be >= 0"),
    (_bad_json(trade_time=_MISSING), "trade_time must be an integer"),
    (_bad_json(trade_time=True), "trade_time must be an integer"),
    (_bad_json(is_buyer_maker="yes"), "is_buyer_maker must be a boolean"),
    (_bad_json(price=67000.5), "price must be a decimal string"),
    (_bad_json(price="1.123456789"), "price is not a decimal with at most 8 places"),
    (_bad_json(price="1e5"), "price is not a decimal with at most 8 places"),
    (_bad_json(price="-1.5"), "price is not a decimal with at most 8 places"),
    (_bad_json(price="0.00000000"), "price must be positive"),
    (_bad_json(qty=_MISSING), "qty must be a decimal string"),
    (_bad_json(qty="0"), "qty must be positive"),
    (_bad_json(price="99999999999999999999.5", qty="99999999999.0"), "price x qty too large"),
]

# Two-trade windows whose exact VWAP lies exactly half-way between two 8-place values.
TIE_UP = ("TIEUPUSDT", "1.00000001", "1.00000002")  # 1.000000015 -> ...02 (odd below: up)
TIE_DOWN = ("TIEDNUSDT", "1.00000002", "1.00000003")  # 1.000000025 -> ...02 (even below: stays)


def _repeat(trade: Trade, *, conflict: bool = False) -> Record:
    if conflict:
        trade = replace(trade, price=trade.price + 1)
    return replace(_record(trade), repeat="conflict" if conflict else "duplicate")


def build(*, repeats: bool = False) -> list[Record]:
    """The data set; with `repeats`, second deliveries of trade ids too: in A (read before the
    restart test's kill) and in D (read after it, of trades read before it)."""
    rng = random.Random(20261124)
    next_id = iter(range(1_000, 100_000))
    on_time: list[Trade] = []
    symbols = {"BTCUSDT": (67_000, 0.5), "ETHUSDT": (3_500, 4.0), "SHIBUSDT": (0.0000213, 5_000_000)}
    for symbol, (price, qty) in symbols.items():
        for minute in range(3):
            for _ in range(6):
                at = T0 + minute * MINUTE + rng.randrange(0, MINUTE)
                p = Decimal(str(price)) * Decimal(str(rng.uniform(0.99, 1.01)))
                q = Decimal(str(qty)) * Decimal(str(rng.uniform(0.0001, 1.0)))
                on_time.append(_trade(symbol, next(next_id), at, str(p), str(q)))
    for symbol, low, high in (TIE_UP, TIE_DOWN):
        on_time.append(_trade(symbol, next(next_id), T0 + 5 * SECOND, low, "1"))
        on_time.append(_trade(symbol, next(next_id), T0 + 6 * SECOND, high, "1"))
    # Amounts whose units pass a long's range: the processor must not read them as longs.
    on_time.append(_trade("BIGUSDT", next(next_id), T0 + 10 * SECOND, "99999999999.5", "0.001"))
    on_time.append(_trade("BIGUSDT", next(next_id), T0 + 11 * SECOND, "0.00001", "99999999999.99999999"))
    # Same trade_time, so open/close must fall back to trade_id order.
    on_time.append(_trade("ETHUSDT", 500, T0 + MINUTE + 30 * SECOND, "3500.5", "1"))
    on_time.append(_trade("ETHUSDT", 499, T0 + MINUTE + 30 * SECOND, "3499.5", "1"))
    # Reorder by up to 8 s: every trade is still within the 10 s watermark of all before it.
    on_time.sort(key=lambda t: t.trade_time + rng.randrange(0, 8 * SECOND))

    phase_a = [_record(t) for t in on_time]
    for i, (value, _reason) in enumerate(BAD_RECORDS):
        phase_a.insert(3 + i * 3, _raw(value))
    if repeats:
        # Of minute-2 trades, whose window stays open until B: one in the same micro-batch as its
        # first delivery, one in a later one, and one with other content.
        minute_2 = [t for t in on_time if t.trade_time >= T0 + 2 * MINUTE]
        phase_a += [
            _repeat(minute_2[-1]),
            _repeat(minute_2[0]),
            _repeat(minute_2[len(minute_2) // 2], conflict=True),
        ]
    # Pad with on-time BTC trades in minute 2:55+ so that B ends a batch.
    while (len(phase_a) + 1) % BATCH:
        phase_a.append(
            _record(_trade("BTCUSDT", next(next_id), T0 + 2 * MINUTE + 55 * SECOND, "67001", "0.1"))
        )

    phase_b = [_record(_trade("BTCUSDT", next(next_id), T0 + 4 * MINUTE + 30 * SECOND, "67010.5", "0.25"))]
    phase_c = [
        _record(_trade("ETHUSDT", next(next_id), T0 + 4 * MINUTE + 21 * SECOND + i * 1_900, "3510.25", "2"))
        for i in range(BATCH)
    ]
    late = [
        _trade("BTCUSDT", next(next_id), T0 + 1 * MINUTE + 10 * SECOND, "60000", "1"),
        _trade("ETHUSDT", next(next_id), T0 + 0 * MINUTE + 20 * SECOND, "3000", "1"),
        _trade("SHIBUSDT", next(next_id), T0 + 2 * MINUTE + 59 * SECOND, "0.00002", "100"),
        _trade("BTCUSDT", next(next_id), T0 + 3 * MINUTE + 10 * SECOND, "60000", "1"),
    ]
    phase_d = [_record(t, late=True) for t in late]
    if repeats:
        phase_d += [
            _repeat(phase_b[0].trade),
            _repeat(phase_c[3].trade),
            _repeat(phase_c[7].trade, conflict=True),
        ]
    phase_d.append(_record(_trade("BTCUSDT", next(next_id), T0 + 6 * MINUTE + 30 * SECOND, "67020", "0.01")))
    return phase_a + phase_b + phase_c + phase_d


def valid_trades(records: list[Record], *, include_late: bool = False) -> list[Trade]:
    """The trades that count: first deliveries only, late ones only if asked for."""
    return [
        r.trade for r in records if r.trade is not None and r.repeat is None and (include_late or not r.late)
    ]


def start_of_phase_d(records: list[Record]) -> int:
    """The offset of the first late trade: the restart test writes the rest after its kill."""
    return next(i for i, r in enumerate(records) if r.late)


FINAL_WATERMARK = T0 + 6 * MINUTE + 20 * SECOND
