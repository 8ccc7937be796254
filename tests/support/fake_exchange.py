"""A fake Binance spot REST API on loopback, for the producer's tests, e2e tests and benchmarks.

A real HTTP server (`ThreadingHTTPServer` on 127.0.0.1, a free port) that speaks
`GET /api/v3/trades`, `GET /api/v3/historicalTrades` and `GET /api/v3/ping` the way Binance does,
from trades it generates (deterministic per seed) or that a test appends.

Usage::

    with FakeExchange(symbols=("BTCUSDT",), initial_trades=1500) as exchange:
        settings = Settings(binance_base_url=exchange.base_url, ...)
        exchange.append("BTCUSDT", count=2500)          # more than one /trades page: an id gap
        exchange.add_fault("429", retry_after_s=1)      # the next request gets 429 + Retry-After
        exchange.add_fault("timeout", delay_s=2.0)      # the one after answers too late
        exchange.start_ticker(trades_per_s=50)          # a live market, until stop_ticker()/stop()
        ...
        assert exchange.violations() == []              # nothing sent while told to wait
        assert exchange.max_weight_per_minute() <= 3000

API at a glance:
  base_url                          http://127.0.0.1:<port>
  append(symbol, count=|trades=)    add trades (generated, or Binance-shaped dicts); returns them
  trades(symbol), trade_ids(symbol) everything the exchange holds, ascending id
  start_ticker(trades_per_s), stop_ticker()   a background market
  add_fault(kind, retry_after_s=, delay_s=, path=, times=), pending_faults()
  requests(path=None)               the request log: RequestRecord(time, path, params, weight,
                                    status, fault, violation)
  violations()                      requests sent while told to wait
  max_weight_per_minute(), max_weight_in_any_window(window_s)
  spend_weight(weight)              weight used by "another client" on the same IP
  klines(symbol, start_ms, end_ms)  1-minute klines of the trades held, in the API's layout
  add_kline_fault(symbol, open_time, kind, times=None)   a wrong/malformed/missing kline

Klines (`GET /api/v3/klines?symbol=&interval=1m&startTime=&endTime=&limit=`, weight 2) are computed
from the trades held, one per minute that has trades (Binance also lists empty minutes), with the
API's 12 fields and 8-place decimal strings (more places only when the quote volume carries them).
A kline fault touches one symbol's minute: "wrong" serves its close 0.01 higher, "malformed" its
close as a JSON number, "missing" leaves the row out; `times` None = every request.

Rate limits: every request adds its weight (25 for the trade endpoints, 1 for ping) to the
current wall-clock minute; the answer carries `X-MBX-USED-WEIGHT-1M`. Past `weight_limit` the
answer is 429 with Retry-After up to the next minute. A request sent while a Retry-After (429)
or a ban (418) is running is recorded as a violation and, like Binance, answered with 418.

Faults (`add_fault`, consumed first in, first out by the next matching request):
  "429"        429 + Retry-After: retry_after_s
  "418"        418 + Retry-After: retry_after_s (an IP ban)
  "500"        500 with a Binance-style error body
  "timeout"    the answer is sent only after delay_s (make it longer than the client timeout)
  "malformed"  200 whose body is not JSON
  "bad_trade"  200 with a JSON array whose first trade has a float price
  "truncated"  200 whose body stops halfway through its Content-Length, then the connection closes
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from app.producer.sample.generate import generate_rows

TRADES_PATH = "/api/v3/trades"
HISTORICAL_TRADES_PATH = "/api/v3/historicalTrades"
PING_PATH = "/api/v3/ping"
KLINES_PATH = "/api/v3/klines"
WEIGHTS = {TRADES_PATH: 25, HISTORICAL_TRADES_PATH: 25, PING_PATH: 1}
WEIGHTS[KLINES_PATH] = 2
KLINE_FAULT_KINDS = ("wrong", "malformed", "missing")
MINUTE_MS = 60_000
FAULT_KINDS = ("429", "418", "500", "timeout", "malformed", "bad_trade", "truncated")
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; `path` None matches any endpoint."""

    kind: str
    retry_after_s: int = 1
    delay_s: float = 2.0
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {FAULT_KINDS}")


@dataclass(frozen=True)
class RequestRecord:
    """One request as the exchange saw it."""

    time: float  # time.time() when it arrived
    path: str
    params: dict[str, str]
    weight: int
    status: int
    fault: str | None = None
    violation: bool = False  # sent while a Retry-After or a ban was running


@dataclass
class _State:
    trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rngs: dict[str, random.Random] = field(default_factory=dict)
    faults: deque[Fault] = field(default_factory=deque)
    log: list[RequestRecord] = field(default_factory=list)
    weight_by_minute: dict[int, int] = field(default_factory=dict)
    blocked_until: float = 0.0  # 429 Retry-After or 418 ban, time.time()
    # (symbol, open time) -> [kind, requests left or None for all]
    kline_faults: dict[tuple[str, int], list[Any]] = field(default_factory=dict)


class FakeExchange:
    """See the module docstring. Thread-safe; start/stop or use as a context manager."""

    def __init__(
        self,
        symbols: Iterable[str] = ("BTCUSDT",),
        *,
        initial_trades: int = 1500,
        first_id: int = 1_000_000,
        weight_limit: int = 6000,
        ban_s: int = 2,
        seed: int = 7,
    ) -> None:
        self.weight_limit = weight_limit
        self.ban_s = ban_s
        self._first_id = first_id
        self._seed = seed
        self._lock = threading.Lock()
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._ticker_stop = threading.Event()
        self._listeners: list[Callable[[str, list[dict[str, Any]]], None]] = []
        for symbol in symbols:
            self.add_symbol(symbol, initial_trades)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeExchange:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-exchange", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_ticker()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeExchange:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>, for Settings.binance_base_url."""
        if self._server is None:
            raise RuntimeError("the fake exchange is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- market data ------------------------------------------------------------------------

    def add_symbol(self, symbol: str, initial_trades: int = 0) -> None:
        with self._lock:
            if symbol in self._state.trades:
                return
            offset = len(self._state.trades)
            self._state.trades[symbol] = []
            self._state.rngs[symbol] = random.Random(self._seed * 1000 + offset)
        if initial_trades:
            self.append(symbol, count=initial_trades)

    def append(
        self, symbol: str, count: int | None = None, trades: Iterable[Mapping[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Add `count` generated trades, or explicit Binance-shaped trades (ids assigned in order
        when missing). Returns the trades added. Many at once between two polls make an id gap."""
        with self._lock:
            book = self._state.trades[symbol]
            next_id = book[-1]["id"] + 1 if book else self._first_id
            last_ms = book[-1]["time"] if book else 0
            added: list[dict[str, Any]] = []
            if trades is not None:
                for item in trades:
                    trade = dict(item)
                    trade.setdefault("id", next_id)
                    if trade["id"] != next_id:
                        raise ValueError(f"{symbol} ids must continue at {next_id}, got {trade['id']}")
                    next_id += 1
                    added.append(trade)
            elif count:
                start_ms = max(int(time.time() * 1000), last_ms)
                rows = generate_rows(
                    self._state.rngs[symbol],
                    first_id=next_id,
                    first_time_us=start_ms * 1000,
                    count=count,
                    mean_gap_us=200,
                    start_price=_last_price(book),
                )
                added = [
                    {
                        "id": row.trade_id,
                        "price": row.price,
                        "qty": row.qty,
                        "quoteQty": row.quote_qty,
                        "time": row.time_us // 1000,
                        "isBuyerMaker": row.is_buyer_maker,
                        "isBestMatch": True,
                    }
                    for row in rows
                ]
            book.extend(added)
            # Called under the lock, so every listener sees each symbol's trades in id order.
            for listener in self._listeners:
                listener(symbol, [dict(t) for t in added])
            return [dict(t) for t in added]

    def subscribe(self, listener: Callable[[str, list[dict[str, Any]]], None]) -> Callable[[], None]:
        """Call `listener(symbol, trades)` with every later append (the WebSocket side,
        tests/support/fake_ws.py); returns the call that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.remove(listener)

        return unsubscribe

    def trades(self, symbol: str) -> list[dict[str, Any]]:
        """Every trade of the symbol so far, ascending id."""
        with self._lock:
            return [dict(t) for t in self._state.trades[symbol]]

    def trade_ids(self, symbol: str) -> list[int]:
        with self._lock:
            return [t["id"] for t in self._state.trades[symbol]]

    def start_ticker(self, trades_per_s: float, symbols: Iterable[str] | None = None) -> None:
        """Append trades in the background (every 100 ms) until stop_ticker() or stop()."""
        self.stop_ticker()
        chosen = list(symbols) if symbols is not None else list(self._state.trades)
        self._ticker_stop.clear()

        def tick() -> None:
            owed = 0.0
            while not self._ticker_stop.wait(0.1):
                owed += trades_per_s * 0.1
                whole = int(owed)
                owed -= whole
                if whole:
                    for symbol in chosen:
                        self.append(symbol, count=whole)

        self._ticker = threading.Thread(target=tick, name="fake-exchange-ticker", daemon=True)
        self._ticker.start()

    def stop_ticker(self) -> None:
        self._ticker_stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None

    # -- faults and observations ------------------------------------------------------------

    def add_fault(
        self,
        kind: str,
        *,
        retry_after_s: int = 1,
        delay_s: float = 2.0,
        path: str | None = None,
        times: int = 1,
    ) -> None:
        """Queue `times` faults of this kind for the next matching requests."""
        with self._lock:
            for _ in range(times):
                self._state.faults.append(Fault(kind, retry_after_s, delay_s, path))

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._state.faults)

    def requests(self, path: str | None = None) -> list[RequestRecord]:
        """The request log, oldest first (optionally one endpoint only)."""
        with self._lock:
            return [r for r in self._state.log if path is None or r.path == path]

    def violations(self) -> list[RequestRecord]:
        """Requests sent while the client had been told to wait (Retry-After or a ban)."""
        return [r for r in self.requests() if r.violation]

    def spend_weight(self, weight: int) -> None:
        """Count weight used by someone else on the same IP in the current minute."""
        with self._lock:
            minute = int(time.time() // 60)
            self._state.weight_by_minute[minute] = self._state.weight_by_minute.get(minute, 0) + weight

    def add_kline_fault(self, symbol: str, open_time: int, kind: str, times: int | None = None) -> None:
        """Serve the kline of this minute wrong, malformed or not at all (see the module docstring)."""
        if kind not in KLINE_FAULT_KINDS:
            raise ValueError(f"unknown kline fault {kind!r}; one of {KLINE_FAULT_KINDS}")
        with self._lock:
            self._state.kline_faults[symbol, open_time] = [kind, times]

    def klines(self, symbol: str, start_ms: int = 0, end_ms: int | None = None) -> list[list[Any]]:
        """The klines whose open time is in [start_ms, end_ms], as the API lays them out."""
        with self._lock:
            return _klines(self._state.trades[symbol], start_ms, end_ms)

    def max_weight_per_minute(self) -> int:
        with self._lock:
            return max(self._state.weight_by_minute.values(), default=0)

    def max_weight_in_any_window(self, window_s: float = 60.0) -> int:
        """Most weight in any sliding window of `window_s`: stricter than Binance's fixed minutes."""
        records = self.requests()
        best, start, total = 0, 0, 0
        for record in records:
            total += record.weight
            while record.time - records[start].time >= window_s:
                total -= records[start].weight
                start += 1
            best = max(best, total)
        return best

    # -- request handling (called from server threads) --------------------------------------

    def _respond(self, path: str, params: dict[str, str]) -> _Answer:
        now = time.time()
        weight = WEIGHTS.get(path, 1)
        with self._lock:
            minute = int(now // 60)
            used = self._state.weight_by_minute.get(minute, 0) + weight
            self._state.weight_by_minute[minute] = used
            headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
            violation = now < self._state.blocked_until
            answer: _Answer
            fault: Fault | None = None
            if violation:
                self._state.blocked_until = max(self._state.blocked_until, now + self.ban_s)
                answer = _error(
                    418, -1003, "Way too much request weight used; IP banned.", headers, self.ban_s
                )
            elif used > self.weight_limit:
                retry_after = max(1, math.ceil((minute + 1) * 60 - now))
                self._state.blocked_until = now + retry_after
                answer = _error(429, -1003, "Too much request weight used.", headers, retry_after)
            else:
                fault = self._take_fault(path)
                answer = self._answer(path, params, headers, fault)
            self._state.log.append(
                RequestRecord(
                    now, path, params, weight, answer.status, fault.kind if fault else None, violation
                )
            )
            return answer

    def _take_fault(self, path: str) -> Fault | None:
        for index, fault in enumerate(self._state.faults):
            if fault.path is None or fault.path == path:
                del self._state.faults[index]
                return fault
        return None

    def _answer(
        self, path: str, params: dict[str, str], headers: dict[str, str], fault: Fault | None
    ) -> _Answer:
        now = time.time()
        if fault is not None and fault.kind in ("429", "418"):
            self._state.blocked_until = max(self._state.blocked_until, now + fault.retry_after_s)
            message = "Too much request weight used." if fault.kind == "429" else "IP banned."
            return _error(int(fault.kind), -1003, message, headers, fault.retry_after_s)
        if fault is not None and fault.kind == "500":
            return _error(500, -1000, "An unknown error occurred while processing the request.", headers)
        if path == PING_PATH:
            return _Answer(200, b"{}", headers)
        if path == KLINES_PATH:
            return self._klines_answer(params, headers, fault)
        if path not in (TRADES_PATH, HISTORICAL_TRADES_PATH):
            return _error(404, -1, "Not found.", headers)
        symbol = params.get("symbol", "")
        book = self._state.trades.get(symbol)
        if book is None:
            return _error(400, -1121, "Invalid symbol.", headers)
        try:
            limit = int(params.get("limit", DEFAULT_LIMIT))
            from_id = int(params["fromId"]) if "fromId" in params else None
        except ValueError:
            return _error(400, -1100, "Illegal characters found in a parameter.", headers)
        limit = max(1, min(limit, MAX_LIMIT))
        if path == HISTORICAL_TRADES_PATH and from_id is not None:
            start = max(0, from_id - book[0]["id"]) if book else 0
            chosen = book[start : start + limit]
        else:
            chosen = book[-limit:]
        payload = json.dumps(chosen, separators=(",", ":")).encode()
        delay = 0.0
        if fault is not None:
            if fault.kind == "malformed":
                payload = b'{"code": -1000, "msg": <html>Bad gateway'
            elif fault.kind == "bad_trade" and chosen:
                broken = [dict(chosen[0], price=float(chosen[0]["price"])), *chosen[1:]]
                payload = json.dumps(broken).encode()
            elif fault.kind == "timeout":
                delay = fault.delay_s
        return _Answer(
            200, payload, headers, delay=delay, truncate=fault is not None and fault.kind == "truncated"
        )

    def _klines_answer(self, params: dict[str, str], headers: dict[str, str], fault: Fault | None) -> _Answer:
        book = self._state.trades.get(params.get("symbol", ""))
        if book is None:
            return _error(400, -1121, "Invalid symbol.", headers)
        if params.get("interval") != "1m":
            return _error(400, -1120, "Invalid interval.", headers)
        try:
            limit = max(1, min(int(params.get("limit", DEFAULT_LIMIT)), MAX_LIMIT))
            start = int(params["startTime"]) if "startTime" in params else None
            end = int(params["endTime"]) if "endTime" in params else None
        except ValueError:
            return _error(400, -1100, "Illegal characters found in a parameter.", headers)
        rows = _klines(book, start or 0, end)
        rows = rows[:limit] if start is not None else rows[-limit:]
        served = []
        for row in rows:
            kind_times = self._state.kline_faults.get((params["symbol"], row[0]))
            if kind_times is not None and kind_times[1] != 0:
                kind = kind_times[0]
                if kind_times[1] is not None:
                    kind_times[1] -= 1
                if kind == "missing":
                    continue
                close = Decimal(row[4]) + Decimal("0.01")
                row = [*row[:4], f"{close:.8f}" if kind == "wrong" else float(row[4]), *row[5:]]
            served.append(row)
        payload = json.dumps(served, separators=(",", ":")).encode()
        if fault is not None and fault.kind == "malformed":
            payload = b'{"code": -1000, "msg": <html>Bad gateway'
        delay = fault.delay_s if fault is not None and fault.kind == "timeout" else 0.0
        return _Answer(
            200, payload, headers, delay=delay, truncate=fault is not None and fault.kind == "truncated"
        )


def _kline_decimal(value: Decimal) -> str:
    """As Binance writes a kline's decimals: 8 places (more only if the value has more)."""
    exponent = value.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) else 0
    return format(value if places > 8 else value.quantize(Decimal("0.00000001")), "f")


def _klines(book: list[dict[str, Any]], start_ms: int, end_ms: int | None) -> list[list[Any]]:
    minutes: dict[int, list[dict[str, Any]]] = {}
    for trade in book:
        open_time = trade["time"] - trade["time"] % MINUTE_MS
        if open_time >= start_ms and (end_ms is None or open_time <= end_ms):
            minutes.setdefault(open_time, []).append(trade)
    rows: list[list[Any]] = []
    for open_time, trades in sorted(minutes.items()):
        ordered = sorted(trades, key=lambda t: (t["time"], t["id"]))
        prices = [Decimal(t["price"]) for t in ordered]
        taker_buys = [t for t in ordered if not t["isBuyerMaker"]]
        rows.append(
            [
                open_time,
                *(_kline_decimal(p) for p in (prices[0], max(prices), min(prices), prices[-1])),
                _kline_decimal(sum((Decimal(t["qty"]) for t in ordered), Decimal(0))),
                open_time + MINUTE_MS - 1,
                _kline_decimal(sum((Decimal(t["quoteQty"]) for t in ordered), Decimal(0))),
                len(ordered),
                _kline_decimal(sum((Decimal(t["qty"]) for t in taker_buys), Decimal(0))),
                _kline_decimal(sum((Decimal(t["quoteQty"]) for t in taker_buys), Decimal(0))),
                "0",
            ]
        )
    return rows


@dataclass
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str]
    delay: float = 0.0
    truncate: bool = False


def _error(
    status: int, code: int, message: str, headers: dict[str, str], retry_after: int | None = None
) -> _Answer:
    all_headers = dict(headers)
    if retry_after is not None:
        all_headers["Retry-After"] = str(retry_after)
    body = json.dumps({"code": code, "msg": message}).encode()
    return _Answer(status, body, all_headers)


def _last_price(book: list[dict[str, Any]]) -> Decimal:
    return Decimal(book[-1]["price"]).quantize(Decimal("0.01")) if book else Decimal("67000.00")


def _handler_for(exchange: FakeExchange) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            params = {key: values[-1] for key, values in parse_qs(url.query).items()}
            answer = exchange._respond(url.path, params)
            if answer.delay:
                time.sleep(answer.delay)
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.truncate:
                    self.send_header("Connection", "close")
                self.end_headers()
                if answer.truncate:
                    self.wfile.write(answer.body[: len(answer.body) // 2])
                    self.close_connection = True
                else:
                    self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (a timeout fault): nothing left to answer.
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            # The request log above is the record; stderr stays quiet.
            return

    return Handler
