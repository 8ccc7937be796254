"""What each case injects, and the two sizes. Pure data: the I/O that injects lives in `runner`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    name: str
    per_symbol: int  # trades per symbol
    windows: int  # closed 1-minute windows per symbol
    chunk: int  # trades appended per symbol at a time (about 3 s of event time)
    fault_at: int  # the chunk before which the fault is injected
    burst: int  # id_gap: trades appended at once per symbol, more than one /trades page
    broker_outage_s: float
    restart_delay_s: float  # systemd RestartSec= of the harness's supervisor
    jobs: int  # cases run at the same time (each with its own topics, processes, exchange)
    startup_timeout_s: float
    settle_timeout_s: float  # from the last trade to every closed window and every raw id
    wall_budget_s: float  # what the whole run should take on a quiet 2-core machine


SIZES = {
    "ci": Size("ci", 1300, 3, 20, 10, 1050, 8.0, 2.0, 3, 300.0, 240.0, 480.0),
    "full": Size("full", 3000, 5, 30, 30, 1500, 20.0, 5.0, 3, 300.0, 300.0, 1500.0),
}


@dataclass(frozen=True)
class Case:
    name: str
    injects: str  # one line for the report
    event: str  # what must show that the fault was counted, and where


CASES = [
    Case("baseline", "nothing: the undisturbed run", "-"),
    Case("producer_sigkill",
         "SIGKILL of the producer mid-stream; more than a page of trades while down; restarted",
         "restart, resume from the raw topic's tail, back-fill"),
    Case("spark_sigkill", "SIGKILL of the Spark job (driver JVM too) mid-stream; restarted on its checkpoint",
         "restart, batch ids continue after the kill"),
    Case("broker_stop", "the broker stopped during ingestion, started again on the same port and log",
         "producer kafka_unreachable/rebuild, Spark batches after the outage"),
    Case("http_429", "429 + Retry-After: 2 on /trades", "rate_limited_429, no request while told to wait"),
    Case("http_418", "418 (IP ban) + Retry-After: 2 on /trades", "banned_418, no request while banned"),
    Case("http_500", "three 500 answers on /trades", "http_errors.5xx"),
    Case("http_timeout", "an answer later than the client timeout on /trades", "http_errors.timeout"),
    Case("http_malformed", "two 200 answers whose body is not JSON", "http_errors.malformed"),
    Case("http_truncated", "two 200 answers cut off halfway through Content-Length", "http_errors.malformed"),
    Case("id_gap", "a burst of more than one /trades page between two polls",
         "gaps_backfilled, /historicalTrades"),
    Case("bad_records", "bad records written straight into the raw topic",
         "each one on the dead-letter topic"),
    Case("duplicates_sigkill",
         "raw records written again as they were, then SIGKILL of the Spark job, then more copies",
         "the job's duplicates count (or late, for a copy of a closed window), batches continue"),
    Case("late_burst", "a burst of trades behind the watermark written into the raw topic",
         "each one on the late-trades topic"),
]  # fmt: skip

# The binance_ws source (the fake exchange's trade stream, tests/support/fake_ws.py).
CASES += [
    Case("ws_drop", "the stream's TCP connection cut, later a normal close as after Binance's 24 hours",
         "stream_connects, /trades after each reconnect"),
    Case("ws_skip", "30 trades left out of the stream: an id gap", "gaps_backfilled, /historicalTrades"),
    Case("ws_malformed", "two frames not JSON, two for a symbol not subscribed, two repeated ids",
         "stream_malformed_frames, stream_unknown_symbol_frames, stream_out_of_order_frames"),
    Case("ws_stall", "the stream goes silent with the connection open", "stream_stalled, stream_connects"),
]  # fmt: skip

CASE_NAMES = [case.name for case in CASES]
