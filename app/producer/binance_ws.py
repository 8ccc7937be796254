"""Live source over Binance's trade WebSocket stream, with id-exact back-fill over REST.

One combined-stream connection (`/stream?streams=btcusdt@trade/ethusdt@trade`) carries every
symbol. A reader thread only moves frames into a queue and reconnects, with back-off and jitter,
whenever the connection ends: a network failure, Binance's disconnect after 24 hours, or a stream
silent for `stream_silence_s`. Pings are answered by the `websockets` library, which also pings
the server so that a dead peer is noticed. Every decision (the order trades go out in, which ids
to back-fill, the weight budget) is `StreamOrder`'s, in app/producer/stream_order.py; this class
feeds it frames, connections and REST answers, and counts what it reports.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from app.common.schema import Trade, now_ms
from app.common.settings import Settings, event_time_lead_ms
from app.producer.binance import MAX_BLOCK_S, StepDriver
from app.producer.metrics import ProducerMetrics
from app.producer.schedule import BACKOFF_BASE_S, BACKOFF_CAP_S
from app.producer.stream_order import StreamOrder
from app.producer.weight_budget import backoff_s

log = logging.getLogger(__name__)

# Binance pings every 20 s and drops a client that has not answered within a minute; our own pings
# notice a dead connection (no pong) within PING_INTERVAL_S + PING_TIMEOUT_S.
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 20.0
OPEN_TIMEOUT_S = 10.0
# Binance's trade frames are a few hundred bytes; anything far larger is not one.
MAX_FRAME_BYTES = 1 << 16


@dataclass(frozen=True, slots=True)
class _Connected:
    """A new connection is open and subscribed: frames after this come from it."""


def stream_url(base_url: str, symbols: tuple[str, ...]) -> str:
    return base_url.rstrip("/") + "/stream?streams=" + "/".join(f"{s.lower()}@trade" for s in symbols)


class BinanceStreamSource:
    """`TradeSource` over the trade stream at `binance_ws_url`, back-filled from `binance_base_url`."""

    def __init__(
        self,
        settings: Settings,
        metrics: ProducerMetrics,
        stop: threading.Event,
        *,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._url = stream_url(settings.binance_ws_url, settings.symbols)
        self._silence_s = settings.stream_silence_s
        self._metrics = metrics
        self._stop = stop
        self._jitter = jitter
        self._driver = StepDriver(settings, metrics, stop)
        self._order = StreamOrder(
            settings.symbols,
            budget_per_minute=settings.weight_budget_per_minute,
            lead_ms=event_time_lead_ms(settings.event_time_lead, settings.watermark_delay),
            jitter=jitter,
        )
        self._inbox: queue.Queue[tuple[str | bytes, int] | _Connected] = queue.Queue()
        self._closing = threading.Event()
        self._reader: threading.Thread | None = None

    def resume(self, last: Mapping[str, Trade]) -> None:
        self._order.resume(last)
        if self._reader is None:
            self._reader = threading.Thread(target=self._read_forever, name="binance-ws", daemon=True)
            self._reader.start()

    def close(self) -> None:
        self._closing.set()
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._driver.close()

    def next_batch(self) -> list[Trade]:
        self._take_inbox(block_s=0)
        return self._driver.step(self._order, self._take_inbox)

    def _take_inbox(self, block_s: float) -> None:
        """Hand every queued frame to the order; wait up to `block_s` for the first one."""
        try:
            item = self._inbox.get(timeout=block_s) if block_s > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            if isinstance(item, _Connected):
                self._metrics.add("stream_connects")
                self._order.connected()
            else:
                dropped = self._order.on_frame(*item)
                if dropped is not None:
                    self._metrics.add(dropped.value)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    # -- the reader thread ------------------------------------------------------------------

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._closing.is_set()

    def _read_forever(self) -> None:
        failures = 0
        while not self._stopping():
            received = self._read_one_connection()
            # A connection that carried trades ended normally (24 h, a stall, a restart at
            # Binance): reconnect soon; one that failed at once backs off further each time.
            failures = 1 if received else failures + 1
            delay = backoff_s(failures, base_s=BACKOFF_BASE_S, cap_s=BACKOFF_CAP_S, jitter=self._jitter())
            log.info("event=stream_reconnect_in s=%.2f failures=%d", delay, failures)
            self._stop.wait(delay)

    def _read_one_connection(self) -> int:
        """Read one connection until it ends; how many frames it carried."""
        received = 0
        try:
            with connect(
                self._url,
                open_timeout=OPEN_TIMEOUT_S,
                ping_interval=PING_INTERVAL_S,
                ping_timeout=PING_TIMEOUT_S,
                close_timeout=2,
                max_size=MAX_FRAME_BYTES,
            ) as connection:
                log.info("event=stream_connected url=%s", self._url)
                self._inbox.put(_Connected())
                last_frame = time.monotonic()
                while not self._stopping():
                    try:
                        message = connection.recv(timeout=MAX_BLOCK_S)
                    except TimeoutError:
                        if time.monotonic() - last_frame >= self._silence_s:
                            log.warning("event=stream_stalled silent_s=%.1f", time.monotonic() - last_frame)
                            return received
                        continue
                    last_frame = time.monotonic()
                    received += 1
                    self._inbox.put((message, now_ms()))
        except (OSError, TimeoutError, WebSocketException) as exc:
            log.warning(
                "event=stream_disconnected frames=%d error=%r", received, str(exc) or type(exc).__name__
            )
        return received
