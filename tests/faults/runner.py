"""One case end to end: its own topics, checkpoint, fake exchange, producer and Spark job (both
supervised), the seeded trades fed in small chunks, the fault injected mid-stream, then what every
topic holds. Every wait is bounded and everything started is stopped in a `finally`."""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from app.common.schema import (
    DeadLetter,
    Metric,
    ProducerMetric,
    RecordError,
    SparkMetric,
    Trade,
    WindowStats,
    metric_from_json,
)
from app.common.settings import Settings
from app.localkafka.broker import LocalBroker
from tests.faults import checks
from tests.faults.cases import Case, Size
from tests.faults.dataset import BAD_RECORDS, SYMBOLS, Dataset, burst_watermark_minutes
from tests.faults.supervisor import Supervised
from tests.producer.kafka_helpers import end_offset_total
from tests.support import conservation
from tests.support.conservation import Conservation
from tests.support.fake_exchange import HISTORICAL_TRADES_PATH, TRADES_PATH, FakeExchange
from tests.support.fake_ws import FakeStream
from tests.support.kafka import read_all, write_raw
from tests.support.pipeline import expected_windows, pipeline_env, wait_for

log = logging.getLogger(__name__)

# The fake exchange is ours: a budget four times the default lets the producer poll each symbol
# every 0.2 s, so a chunk of trades is taken in one poll. The weight check holds it to this budget.
WEIGHT_BUDGET = 24_000
HTTP_TIMEOUT_S = 2.0
SYNC_S = 1.0  # the feeder waits this long at most for a poll of every symbol after each chunk
RETRY_AFTER_S = 2
SETTLE_S = 2.0  # after the last window: anything extra (a duplicate) would show up by then
TRIGGER_S = 0.5  # the pipeline's trigger interval (tests.support.pipeline.pipeline_env)
DUPLICATE_COPIES = 25  # raw records written again at each of the duplicates case's three moments
LATE_BURST = 40
LATE_SYMBOL = "LATEUSDT"  # served by nobody, so the id checks of the served symbols do not see it
STREAM_SILENCE_S = 2.0  # ws_stall: how soon the producer gives up on a silent stream
# What each ws_ case tells the fake stream, in turn: (fault, how many trades it takes).
WS_FAULTS = {
    "ws_drop": [("drop", 1), ("expire", 1)],
    "ws_skip": [("skip", 30)],
    "ws_malformed": [("malformed", 2), ("unknown_symbol", 2), ("repeat", 2)],
    "ws_stall": [("stall", 1)],
}


class CaseError(RuntimeError):
    """A bounded wait ran out, or the harness could not do its part."""


@dataclass(frozen=True)
class Shared:
    """What every case of a run shares: the broker (not for broker_stop), the data, the size."""

    bootstrap: str
    dataset: Dataset
    size: Size
    work_dir: Path  # checkpoints and the broker_stop case's own broker
    logs_dir: Path


@dataclass
class Observation:
    """Everything one case saw, before it is compared with the baseline."""

    case: str
    seconds: float = 0.0
    ids: checks.IdReport | None = None
    finals: checks.FinalWindows | None = None
    vs_exact: list[str] = field(default_factory=list)
    letters: checks.DeadLetterReport | None = None
    conservation: Conservation | None = None
    evidence: checks.Evidence = field(default_factory=checks.Evidence)
    process_state: str = "not started"
    error: str | None = None
    logs: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # seconds spent starting, feeding, ...


def _timed(obs: Observation, phase: str, step: Callable[[], None]) -> None:
    mark = time.monotonic()
    try:
        step()
    finally:
        obs.phases[phase] = round(time.monotonic() - mark, 1)


def _quiet_end_offsets(bootstrap: str, topic: str) -> int:
    try:
        return end_offset_total(bootstrap, topic)
    except Exception:  # the broker may be away (broker_stop): not there yet
        return -1


class CaseRun:
    def __init__(self, case: Case, shared: Shared) -> None:
        self.case = case
        self.shared = shared
        self.size = shared.size
        self.logs = shared.logs_dir / case.name
        shutil.rmtree(self.logs, ignore_errors=True)
        self.logs.mkdir(parents=True)
        self.work = shared.work_dir / case.name
        self.broker: LocalBroker | None = None
        self.bootstrap = shared.bootstrap
        self.exchange: FakeExchange | None = None
        self.spark: Supervised | None = None
        self.producer: Supervised | None = None
        self.settings: Settings | None = None
        self.injected = threading.Event()
        self.fault_ms: int | None = None  # when the fault took effect (kill, broker back)
        self.bad_values: list[bytes | None] = []
        self.fault_error: str | None = None
        self.fault_thread: threading.Thread | None = None
        self.injected_copies = 0
        self.injected_late = 0
        self.stream: FakeStream | None = None  # the ws_ cases' trade stream

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> Observation:
        obs = Observation(self.case.name, logs=str(self.logs))
        started = time.monotonic()
        with ExitStack() as stack:
            try:
                _timed(obs, "start", lambda: self._start(stack))
                _timed(obs, "feed", self._feed)
                _timed(obs, "settle", self._settle)
            except Exception as exc:
                obs.error = f"{type(exc).__name__}: {exc}"
                (self.logs / "harness-error.txt").write_text(traceback.format_exc())
                log.error("%s: %s", self.case.name, obs.error)
            finally:
                if self.fault_thread is not None:  # a failed feed may leave it running
                    self.fault_thread.join(timeout=self.size.startup_timeout_s)
                obs.process_state = self._process_state()
                _timed(obs, "stop", self._stop_processes)
                try:
                    if self.settings is not None:
                        self._collect(obs)
                except Exception as exc:
                    obs.error = obs.error or f"collecting: {type(exc).__name__}: {exc}"
                    (self.logs / "collect-error.txt").write_text(traceback.format_exc())
        if self.fault_error and not obs.error:
            obs.error = self.fault_error
        obs.seconds = round(time.monotonic() - started, 1)
        return obs

    def _start(self, stack: ExitStack) -> None:
        if self.case.name == "broker_stop":
            # Its own broker: stopping the shared one would disturb the cases running beside it.
            self.broker = LocalBroker(data_dir=self.work / "kafka", heap="384m")
            self.broker.start(timeout_s=120)
            stack.callback(self.broker.stop)
            self.bootstrap = self.broker.bootstrap_servers
        env = self._pipeline_env(
            TELEMETRY_WEIGHT_BUDGET_PER_MINUTE=str(WEIGHT_BUDGET),
            TELEMETRY_HTTP_TIMEOUT_S=str(HTTP_TIMEOUT_S),
        )
        if self.case.name == "id_gap":
            watermark = burst_watermark_minutes(self.size.windows)
            env["TELEMETRY_WATERMARK_DELAY"] = f"{watermark} minutes"
        self.exchange = FakeExchange(symbols=SYMBOLS, initial_trades=0, weight_limit=WEIGHT_BUDGET)
        self.exchange.start()
        stack.callback(self.exchange.stop)
        env["TELEMETRY_BINANCE_BASE_URL"] = self.exchange.base_url
        if self.case.name.startswith("ws_"):
            env |= self._start_stream(stack)
        self.settings = Settings.from_env(env)
        delay = self.size.restart_delay_s
        self.spark = Supervised("app.processing", env, self.logs / "processing.log", delay)
        wait_for(lambda: self._spark_starts() >= 1, self.size.startup_timeout_s, "the Spark queries")
        self.producer = Supervised("app.producer", env, self.logs / "producer.log", delay)
        assert self.exchange is not None
        exchange = self.exchange
        if self.stream is not None:
            stream = self.stream
            wait_for(lambda: stream.connections() >= 1, 60, "the producer's stream", interval_s=0.5)
            return
        wait_for(
            lambda: len(exchange.requests(TRADES_PATH)) >= 2, 60, "the producer's first polls", interval_s=0.5
        )

    def _spark_starts(self) -> int:
        assert self.spark is not None
        # The job logs "streaming <raw> -> <aggregates>, checkpoints in ..." once its queries run.
        return len(re.findall(r" app\.processing streaming \S+ -> ", self.spark.log_text()))

    def _pipeline_env(self, **overrides: str) -> dict[str, str]:
        """New topics on the case's broker and the environment of a run on them."""
        return pipeline_env(self.bootstrap, self.work / "checkpoints", SYMBOLS) | overrides

    def _feed(self) -> None:
        assert self.exchange is not None
        data, size = self.shared.dataset, self.size
        chunks = {s: data.chunks(s, size.chunk) for s in SYMBOLS}
        count = len(chunks[SYMBOLS[0]])
        index = 0
        while index < count:
            if index == size.fault_at and self.case.name != "baseline":
                self.fault_thread = threading.Thread(
                    target=self._inject, name=f"fault-{self.case.name}", daemon=True
                )
                self.fault_thread.start()
                # The fault must have taken effect before the feed goes on (a kill waits for
                # the first published trades or windows).
                timeout_s = self.size.startup_timeout_s
                wait_for(self.injected.is_set, timeout_s, "the fault to be injected", interval_s=0.2)
            if index == size.fault_at and self.case.name in ("id_gap", "producer_sigkill"):
                # More than one /trades page at once (while the producer is down, for the kill):
                # the next poll sees a hole and back-fills from /historicalTrades.
                taken = math.ceil(size.burst / size.chunk)
                self._append({s: [t for c in chunks[s][index : index + taken] for t in c] for s in SYMBOLS})
                index += taken
                wait_for(self._backfilled, self.size.startup_timeout_s, "a back-fill", interval_s=0.5)
                continue
            self._append({s: chunks[s][index] for s in SYMBOLS})
            index += 1
        if self.fault_thread is not None:
            self.fault_thread.join(timeout=self.size.startup_timeout_s + self.size.broker_outage_s)
            if self.fault_thread.is_alive():
                raise CaseError("the fault did not end in time")
        self._append({s: [data.closers[s]] for s in SYMBOLS})

    def _backfilled(self) -> bool:
        assert self.exchange is not None
        return bool(self.exchange.requests(HISTORICAL_TRADES_PATH))

    def _append(self, trades: dict[str, list[dict[str, Any]]]) -> None:
        """Append to the exchange, then wait (briefly) until every symbol has been polled since:
        each poll then takes one chunk, a few seconds of event time, whatever the machine load."""
        assert self.exchange is not None
        for symbol, rows in trades.items():
            self.exchange.append(symbol, trades=rows)
        since = time.time()
        if self.stream is not None:
            self._stream_sync(sum(len(rows) for rows in trades.values()))
            return
        deadline = time.monotonic() + SYNC_S
        while time.monotonic() < deadline:
            polled = {
                r.params.get("symbol") for r in self.exchange.requests() if r.time > since and r.status == 200
            }
            if polled >= set(trades):
                return
            time.sleep(0.05)

    def _settle(self) -> None:
        assert self.exchange is not None and self.settings is not None
        s = self.settings
        served = sum(len(self.exchange.trade_ids(sym)) for sym in SYMBOLS) + len(self.bad_values)
        wait_for(lambda: _quiet_end_offsets(s.kafka_bootstrap_servers, s.raw_topic) >= served,
                 self.size.settle_timeout_s, "every served trade in the raw topic")  # fmt: skip
        want = self._expected().keys()

        def closed() -> bool:
            rows = read_all(s.kafka_bootstrap_servers, s.aggregates_topic, timeout_s=30)
            windows = [WindowStats.from_json(r.value) for r in rows]
            return want <= {w.key for w in windows if w.is_final}

        wait_for(closed, self.size.settle_timeout_s, "every closed window", interval_s=2.0)
        time.sleep(SETTLE_S)

    def _expected(self) -> dict[str, dict[str, Any]]:
        assert self.exchange is not None
        expected: dict[str, dict[str, Any]] = {}
        for symbol in SYMBOLS:
            expected |= expected_windows(symbol, self.exchange.trades(symbol)[:-1])  # without the closer
        return expected

    # -- faults -----------------------------------------------------------------------------

    def _inject(self) -> None:
        try:
            getattr(self, f"_fault_{self.case.name.split('_')[0]}")()
        except Exception as exc:
            self.fault_error = f"injecting: {type(exc).__name__}: {exc}"
            (self.logs / "fault-error.txt").write_text(traceback.format_exc())
        finally:
            self.injected.set()

    def _fault_producer(self) -> None:
        assert self.producer is not None and self.settings is not None
        s = self.settings
        # Something must be in the raw topic: a restart on an empty topic is a fresh start.
        wait_for(lambda: _quiet_end_offsets(s.kafka_bootstrap_servers, s.raw_topic) >= 2 * self.size.chunk,
                 60, "the first published trades", interval_s=0.5)  # fmt: skip
        self.producer.kill()
        self.fault_ms = int(time.time() * 1000)
        self.injected.set()
        if not self.producer.wait_restarted(1, self.size.restart_delay_s + 30):
            raise CaseError("the producer was not restarted")

    def _fault_spark(self) -> None:
        assert self.spark is not None and self.settings is not None
        s = self.settings
        wait_for(lambda: _quiet_end_offsets(s.kafka_bootstrap_servers, s.aggregates_topic) >= 1,
                 self.size.startup_timeout_s, "the first live windows", interval_s=0.5)  # fmt: skip
        self.spark.kill()
        self.fault_ms = int(time.time() * 1000)
        self.injected.set()
        wait_for(lambda: self._spark_starts() >= 2, self.size.startup_timeout_s, "the restarted Spark job")

    def _fault_broker(self) -> None:
        assert self.broker is not None
        self.broker.stop()
        self.injected.set()
        time.sleep(self.size.broker_outage_s)  # trades keep coming while Kafka is away
        self.broker.start(timeout_s=120)
        self.fault_ms = int(time.time() * 1000)

    def _fault_id(self) -> None:
        self.injected.set()  # the burst itself is fed by _feed

    def _fault_http(self) -> None:
        assert self.exchange is not None
        kind = self.case.name.removeprefix("http_")
        times = {"429": 1, "418": 1, "500": 3, "timeout": 1, "malformed": 2, "truncated": 2}[kind]
        self.exchange.add_fault(
            kind,
            retry_after_s=RETRY_AFTER_S,
            delay_s=HTTP_TIMEOUT_S + 1.5,
            path=TRADES_PATH,
            times=times,
        )
        self.injected.set()
        exchange = self.exchange
        wait_for(lambda: exchange.pending_faults() == 0, 60, "the faults to be served", interval_s=0.5)

    def _copy_newest_raw(self, count: int) -> None:
        """Write the raw topic's newest `count` trades again, byte for byte (a second delivery)."""
        assert self.settings is not None
        s = self.settings
        rows = read_all(s.kafka_bootstrap_servers, s.raw_topic, timeout_s=30)[-count:]
        write_raw(s.kafka_bootstrap_servers, s.raw_topic, [(r.key, r.value, r.timestamp) for r in rows])
        self.injected_copies += len(rows)

    def _fault_duplicates(self) -> None:
        assert self.spark is not None and self.settings is not None
        s = self.settings
        wait_for(lambda: _quiet_end_offsets(s.kafka_bootstrap_servers, s.aggregates_topic) >= 1,
                 self.size.startup_timeout_s, "the first live windows", interval_s=0.5)  # fmt: skip
        self._copy_newest_raw(DUPLICATE_COPIES)
        time.sleep(2 * TRIGGER_S)  # read by the job before the kill
        self.spark.kill()
        self.fault_ms = int(time.time() * 1000)
        self._copy_newest_raw(DUPLICATE_COPIES)  # of trades the killed job had read
        self.injected.set()
        wait_for(lambda: self._spark_starts() >= 2, self.size.startup_timeout_s, "the restarted Spark job")
        self._copy_newest_raw(DUPLICATE_COPIES)

    def _fault_late(self) -> None:
        """Trades of a symbol nobody serves, dated in the data set's first window: by now final."""
        assert self.settings is not None
        first_ms = self.shared.dataset.first_window_ms
        trades = [
            Trade(
                trade_id=i,
                symbol=LATE_SYMBOL,
                price=Decimal("100.5"),
                qty=Decimal("0.25"),
                quote_qty=Decimal("25.125"),
                trade_time=first_ms + i,
                is_buyer_maker=False,
            )
            for i in range(1, LATE_BURST + 1)
        ]
        s = self.settings
        self.injected.set()  # the feed goes on: it is what moves the watermark past the window

        def first_window_final() -> bool:
            rows = read_all(s.kafka_bootstrap_servers, s.aggregates_topic, timeout_s=30)
            return any(WindowStats.from_json(r.value).is_final for r in rows)

        wait_for(first_window_final, self.size.settle_timeout_s, "a final window", interval_s=1.0)
        items = [(LATE_SYMBOL.encode(), t.to_json(), None) for t in trades]
        write_raw(s.kafka_bootstrap_servers, s.raw_topic, items)
        self.injected_late = len(trades)
        self.fault_ms = int(time.time() * 1000)

    def _fault_bad(self) -> None:
        assert self.settings is not None
        first_ms = self.shared.dataset.first_window_ms
        keys = (b"BTCUSDT", None, b"bad", b"ETHUSDT")
        items = [(keys[i % len(keys)], value, first_ms + 1_000) for i, (_, value) in enumerate(BAD_RECORDS)]
        self.bad_values = [value for _, value in BAD_RECORDS]
        # write_raw's hint says bytes, but kafka-python sends a None value as an empty record,
        # which is one of the bad kinds.
        write_raw(self.settings.kafka_bootstrap_servers, self.settings.raw_topic, cast(Any, items))
        self.fault_ms = int(time.time() * 1000)
        self.injected.set()

    # -- ending and reading -----------------------------------------------------------------

    def _process_state(self) -> str:
        states = [p.state() for p in (self.producer, self.spark) if p is not None]
        if len(states) < 2:
            return "not started"
        dead = [s for s in states if s.startswith("dead")]
        if dead:
            return dead[0]
        return "restarted" if "restarted" in states else "alive"

    def _stop_processes(self) -> None:
        for process in (self.producer, self.spark):
            if process is not None:
                try:
                    process.stop()
                except Exception:
                    log.exception("could not stop %s", process.module)

    def _collect(self, obs: Observation) -> None:
        assert self.settings is not None and self.exchange is not None
        s = self.settings
        if self.broker is not None:
            self.broker.start(timeout_s=120)  # in case the case failed while it was stopped
        bootstrap = s.kafka_bootstrap_servers
        served = {symbol: self.exchange.trade_ids(symbol) for symbol in SYMBOLS}
        trades: list[Trade] = []
        raw = read_all(bootstrap, s.raw_topic, timeout_s=60)
        for record in raw:
            try:
                trade = Trade.from_json(record.value)
            except RecordError:
                continue
            if trade.symbol in served:
                trades.append(trade)
        obs.ids = checks.id_continuity(served, [(t.symbol, t.trade_id) for t in trades])
        rows = [WindowStats.from_json(r.value) for r in read_all(bootstrap, s.aggregates_topic, timeout_s=60)]
        obs.finals = checks.final_windows(rows)
        obs.vs_exact = checks.window_differences(obs.finals.windows, self._expected())
        dead = read_all(bootstrap, s.dead_letter_topic, timeout_s=60)
        letters = [DeadLetter.from_json(r.value) for r in dead]
        obs.letters = checks.dead_letters(letters, self.bad_values)
        reports = read_all(bootstrap, s.metrics_topic, timeout_s=60)
        metrics = [metric_from_json(r.key, r.value) for r in reports]
        obs.conservation = conservation.measure(s)
        obs.evidence = self._evidence([m for m in metrics if m is not None], len(letters))
        obs.evidence.late_trades = obs.conservation.late
        obs.evidence.duplicates = obs.conservation.duplicates
        obs.evidence.late_risk = checks.late_risk(
            ((t.trade_time, t.ingest_time) for t in trades), watermark_ms=s.watermark_delay.ms
        )
        (self.logs / "observation.json").write_text(
            json.dumps(
                {
                    "windows": checks.canonical(obs.finals.windows),
                    "dead_letters": [asdict(letter) for letter in letters],
                },
                indent=1,
            )
        )

    def _evidence(self, metrics: list[Metric], letters: int) -> checks.Evidence:
        assert self.exchange is not None and self.producer is not None and self.spark is not None
        producer = [m for m in metrics if isinstance(m, ProducerMetric)]
        spark = [m for m in metrics if isinstance(m, SparkMetric)]
        e = checks.Evidence(
            producer=checks.max_counters(producer),
            producer_snapshots=len(producer),
            spark_snapshots=len(spark),
            injected_copies=self.injected_copies,
            injected_late=self.injected_late,
            restarts={"producer": self.producer.restarts, "spark": self.spark.restarts},
            log_events=dict(Counter(re.findall(r"event=(\w+)", self.producer.log_text()))),
            historical_requests=len(self.exchange.requests(HISTORICAL_TRADES_PATH)),
            faults_served=sum(1 for r in self.exchange.requests() if r.fault),
            faults_pending=self.exchange.pending_faults(),
            violations=len(self.exchange.violations()),
            max_weight_per_minute=self.exchange.max_weight_per_minute(),
            weight_budget=WEIGHT_BUDGET,
            dead_letters=letters,
        )
        if self.fault_ms is not None:
            for m in spark:
                query, batch, at = m.query, m.batch_id, m.time
                if not query:
                    continue
                if at < self.fault_ms:
                    e.spark_batches_before[query] = max(e.spark_batches_before.get(query, -1), batch)
                else:
                    e.spark_batches_after[query] = min(e.spark_batches_after.get(query, batch), batch)
        if self.stream is not None:
            e.faults_served += len(self.stream.faults_served())
            e.faults_pending += self.stream.pending_faults()
        return e

    # -- the WebSocket source's cases (ws_*) ------------------------------------------------

    def _start_stream(self, stack: ExitStack) -> dict[str, str]:
        assert self.exchange is not None
        self.stream = FakeStream(self.exchange).start()
        stack.callback(self.stream.stop)
        return {
            "TELEMETRY_SOURCE": "binance_ws",
            "TELEMETRY_BINANCE_WS_URL": self.stream.url,
            "TELEMETRY_STREAM_SILENCE_S": str(STREAM_SILENCE_S),
        }

    def _stream_sync(self, count: int) -> None:
        """Wait (briefly) until the stream has sent the trades just appended."""
        assert self.stream is not None
        stream = self.stream
        target = stream.frames_sent() + count
        deadline = time.monotonic() + SYNC_S
        while time.monotonic() < deadline and stream.frames_sent() < target:
            time.sleep(0.02)

    def _fault_ws(self) -> None:
        assert self.stream is not None
        stream = self.stream
        for kind, times in WS_FAULTS[self.case.name]:
            stream.add_fault(kind, times=times)
            self.injected.set()
            wait_for(
                lambda: stream.pending_faults() == 0, 60, f"the {kind} fault to be served", interval_s=0.2
            )
