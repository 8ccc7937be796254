"""A fake Binance trade WebSocket stream on loopback, fed by a `FakeExchange`'s trade store.

A real WebSocket server (`websockets`, 127.0.0.1, a free port) that speaks Binance's combined
stream layout: `/stream?streams=btcusdt@trade/ethusdt@trade`, each message
`{"stream": "btcusdt@trade", "data": {"e": "trade", "E", "s", "t", "p", "q", "T", "m", "M"}}`.
Like Binance, a connection carries the trades appended to the exchange after it opened, so trades
made while no connection is open reach a client only through the REST back-fill.

Usage::

    with FakeExchange(symbols=("BTCUSDT",)) as exchange, FakeStream(exchange) as stream:
        settings = Settings(binance_ws_url=stream.url, binance_base_url=exchange.base_url, ...)
        stream.add_fault("skip", times=3)     # the next three trades are not sent: an id gap
        exchange.append("BTCUSDT", count=10)

Faults (`add_fault`, consumed first in, first out, one per trade about to be sent):
  "drop"            the TCP connection is cut (no close frame); this trade is not sent
  "expire"          a normal close (1001, as after Binance's 24 hours); this trade is not sent
  "stall"           nothing more is sent on this connection, though it stays open and answers pings
  "skip"            this trade is not sent
  "malformed"       a frame that is not JSON, then this trade
  "unknown_symbol"  this trade under a symbol that was not subscribed, then this trade
  "repeat"          this trade, then the same frame again (an id that does not increase)
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from tests.support.fake_exchange import FakeExchange

# websockets logs every connection opened and closed at INFO: the tests count connections instead.
QUIET_LOG = logging.getLogger(__name__)
QUIET_LOG.setLevel(logging.WARNING)
STREAM_FAULTS = ("drop", "expire", "stall", "skip", "malformed", "unknown_symbol", "repeat")
UNKNOWN_SYMBOL = "NOPEUSDT"


def trade_frame(symbol: str, trade: dict[str, Any]) -> str:
    """One combined-stream message for a Binance-shaped REST trade."""
    event = {
        "e": "trade",
        "E": int(time.time() * 1000),
        "s": symbol,
        "t": trade["id"],
        "p": trade["price"],
        "q": trade["qty"],
        "T": trade["time"],
        "m": trade["isBuyerMaker"],
        "M": True,
    }
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": event}, separators=(",", ":"))


class FakeStream:
    """See the module docstring. Start/stop or use as a context manager."""

    def __init__(self, exchange: FakeExchange, *, ping_interval_s: float = 20.0) -> None:
        self._exchange = exchange
        # Binance pings every 20 s and drops a client that does not answer; a test may ping faster.
        self._ping_interval_s = ping_interval_s
        self._lock = threading.Lock()
        self._faults: deque[str] = deque()
        self._served: list[str] = []
        self._connections = 0
        self._frames = 0
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> FakeStream:
        if self._server is None:
            self._stopping.clear()
            self._server = serve(
                self._handle,
                "127.0.0.1",
                0,
                ping_interval=self._ping_interval_s,
                ping_timeout=self._ping_interval_s,
                logger=QUIET_LOG,
            )
            self._thread = threading.Thread(target=self._server.serve_forever, name="fake-ws", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """ws://127.0.0.1:<port>, for Settings.binance_ws_url."""
        if self._server is None:
            raise RuntimeError("the fake stream is not started")
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}"

    def add_fault(self, kind: str, times: int = 1) -> None:
        if kind not in STREAM_FAULTS:
            raise ValueError(f"unknown stream fault {kind!r}; one of {STREAM_FAULTS}")
        with self._lock:
            self._faults.extend([kind] * times)

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def faults_served(self) -> list[str]:
        with self._lock:
            return list(self._served)

    def connections(self) -> int:
        """Connections accepted and streaming so far."""
        with self._lock:
            return self._connections

    def frames_sent(self) -> int:
        with self._lock:
            return self._frames

    # -- one connection (a server thread each) ----------------------------------------------

    def _take_fault(self) -> str | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults.popleft()
            self._served.append(fault)
            return fault

    def _send(self, connection: ServerConnection, message: str) -> None:
        connection.send(message)
        with self._lock:
            self._frames += 1

    def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        query = parse_qs(urlsplit(connection.request.path).query)
        streams = set(query.get("streams", [""])[0].split("/"))
        inbox: queue.Queue[tuple[str, list[dict[str, Any]]]] = queue.Queue()

        def listen(symbol: str, trades: list[dict[str, Any]]) -> None:
            if f"{symbol.lower()}@trade" in streams:
                inbox.put((symbol, trades))

        unsubscribe = self._exchange.subscribe(listen)
        with self._lock:  # counted once it streams: a test that waits for it misses no trade
            self._connections += 1
        try:
            while not self._stopping.is_set():
                try:
                    symbol, trades = inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                for trade in trades:
                    if not self._deliver(connection, symbol, trade):
                        return
        except ConnectionClosed:
            return
        finally:
            unsubscribe()

    def _deliver(self, connection: ServerConnection, symbol: str, trade: dict[str, Any]) -> bool:
        """Send one trade as the next fault says; False once this connection is finished."""
        fault = self._take_fault()
        frame = trade_frame(symbol, trade)
        if fault == "drop":
            with contextlib.suppress(OSError):  # the client may have gone already
                connection.socket.shutdown(socket.SHUT_RDWR)
            return False
        if fault == "expire":
            connection.close(1001, "connection lifetime reached")
            return False
        if fault == "stall":
            # Open and answering pings (the library does), silent until the client leaves.
            while not self._stopping.is_set():
                try:
                    connection.recv(timeout=0.5)
                except TimeoutError:
                    continue
            return False
        if fault == "skip":
            return True
        if fault == "malformed":
            self._send(connection, '{"stream":"btcusdt@trade","data":{"e":"trade",')
        elif fault == "unknown_symbol":
            self._send(connection, trade_frame(UNKNOWN_SYMBOL, trade))
        self._send(connection, frame)
        if fault == "repeat":
            self._send(connection, frame)
        return True
