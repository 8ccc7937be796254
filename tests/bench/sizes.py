"""The two sizes of the benchmark: `full` (published figures) and `ci` (minutes, correctness gate)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    name: str
    # Latency run: one symbol (the appliance's default), trades fed in real time.
    warm_up_s: float  # fed before latency counts: Spark's first batches compile
    live_rate: int  # trades/s, a realistic live market
    live_s: float
    burst_rate: int  # trades/s, a burst several pages per poll
    burst_s: float
    compare_latency: bool  # also run the slower settings the defaults replaced, for the ratio
    # Replay throughput.
    replay_trades: int
    replay_variants: tuple[str, ...]
    replay_rounds: int  # turns the job and its two references each take (tests/bench/replay.py)
    # Producer catch-up.
    catch_up_backlog: int
    catch_up_budgets: tuple[int, ...]
    # Dashboard.
    dashboard_reruns: int


SIZES = {
    "full": Size(
        name="full",
        warm_up_s=20,
        live_rate=300,
        live_s=90,
        burst_rate=4000,
        burst_s=10,
        compare_latency=True,
        replay_trades=1_000_000,
        replay_variants=("default", "shuffle_200", "trigger_5s", "max_offsets_none"),
        replay_rounds=2,
        catch_up_backlog=300_000,
        catch_up_budgets=(6000, 3000),
        dashboard_reruns=20,
    ),
    "ci": Size(
        name="ci",
        warm_up_s=15,
        live_rate=300,
        live_s=25,
        burst_rate=3000,
        burst_s=5,
        compare_latency=False,
        replay_trades=100_000,
        replay_variants=("default",),
        replay_rounds=2,
        catch_up_backlog=20_000,
        catch_up_budgets=(6000, 3000),
        dashboard_reruns=5,
    ),
}

# Settings overrides of each replay variant: one setting changed at a time from the defaults.
REPLAY_VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "shuffle_200": {"TELEMETRY_SHUFFLE_PARTITIONS": "200"},
    "trigger_5s": {"TELEMETRY_TRIGGER_INTERVAL": "5 seconds"},
    "max_offsets_none": {"TELEMETRY_MAX_OFFSETS_PER_TRIGGER": "0"},
}

# The poll interval the default replaced (1 s), measured beside it.
SLOWER_LATENCY = {"TELEMETRY_POLL_INTERVAL_S": "1.0"}

# The WebSocket source (phase "stream"): the same live run with TELEMETRY_SOURCE=binance_ws, on one
# symbol beside the REST run for the ratio, then on ten symbols sharing the same trade rate.
STREAM = {"TELEMETRY_SOURCE": "binance_ws"}
STREAM_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT",
                  "DOGEUSDT", "ADAUSDT", "TRXUSDT", "LINKUSDT", "AVAXUSDT")  # fmt: skip
