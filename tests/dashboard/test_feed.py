"""WindowFeed against the real Kafka broker: upserts, history bound, metrics, DLQ, outages.

The rules the feed applies (final rows, pruning, health, status) are tested without Kafka in
test_state.py; these tests check that the feed reads the topics and applies them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from app.common.schema import FieldDifference, ReconcileStatus, Reconciliation
from app.core.windows import WINDOW_MS
from app.dashboard.feed import FeedState, WindowFeed
from app.localkafka.broker import LocalBroker, free_port
from tests.dashboard.conftest import Topics, new_topics
from tests.dashboard.helpers import (
    final,
    minute,
    now_ms,
    producer_report,
    seed_metrics,
    seed_windows,
    spark_report,
    window,
)
from tests.support.kafka import create_topics, unique_topic, write_raw

HOUR_MS = 3_600_000


def open_feed(bootstrap: str, topics: Topics, feeds: list[WindowFeed], **kwargs: object) -> WindowFeed:
    feed = WindowFeed(
        bootstrap,
        topics.aggregates,
        topics.metrics,
        topics.dead_letters,
        offsets_every_s=0.2,
        **kwargs,  # type: ignore[arg-type]
    )
    feeds.append(feed)
    return feed


def poll_until(feed: WindowFeed, done: Callable[[], bool], timeout_s: float = 15.0) -> int:
    """Poll until `done()`; returns the number of records applied on the way."""
    applied = 0
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"condition not met in {timeout_s}s; status {feed.status()}"
        applied += feed.poll(max_wait_s=0.2)
    return applied


def test_rows_are_upserted_by_key_and_listed_oldest_first(
    bootstrap: str, topics: Topics, feeds: list[WindowFeed]
) -> None:
    start = minute(now_ms()) - 3 * WINDOW_MS
    early = window(start, ["100.00", "101.00"])
    grown = window(start, ["100.00", "101.00", "99.50"])
    later = window(start + WINDOW_MS, ["102.00"], first_id=10)
    other = window(start, ["3000.00"], symbol="ETHUSDT")
    seed_windows(bootstrap, topics.aggregates, [later, early, other, grown])

    feed = open_feed(bootstrap, topics, feeds)
    poll_until(feed, lambda: feed.status().caught_up)

    assert feed.symbols() == ["BTCUSDT", "ETHUSDT"]
    assert feed.windows("BTCUSDT") == [grown, later]
    assert feed.latest("BTCUSDT") == later
    assert feed.windows("ETHUSDT") == [other]
    assert feed.windows("XRPUSDT") == []
    assert feed.status().state is FeedState.CONNECTED


def test_history_bound_seeks_by_time_and_drops_old_windows(
    bootstrap: str, topics: Topics, feeds: list[WindowFeed]
) -> None:
    now = now_ms()
    old_written = window(minute(now) - 3 * HOUR_MS, ["90.00"])
    # Re-emitted recently (Kafka timestamp = now) but its window is older than the bound.
    old_window_new_record = window(minute(now) - 2 * HOUR_MS, ["91.00"])
    recent = window(minute(now) - 2 * WINDOW_MS, ["100.00"])
    seed_windows(bootstrap, topics.aggregates, [old_written], timestamp_ms=now - 3 * HOUR_MS)
    seed_windows(bootstrap, topics.aggregates, [old_window_new_record, recent])

    feed = open_feed(bootstrap, topics, feeds, history_hours=1.0)
    applied = poll_until(feed, lambda: feed.status().caught_up)

    assert applied == 2, "the record written 3 h ago must not even be fetched"
    assert feed.windows("BTCUSDT") == [recent]


def test_windows_older_than_the_bound_are_pruned_while_running(
    bootstrap: str, topics: Topics, feeds: list[WindowFeed]
) -> None:
    clock = [now_ms()]
    first = window(minute(clock[0]) - 10 * WINDOW_MS, ["100.00"])
    second = window(minute(clock[0]) - 2 * WINDOW_MS, ["101.00"])
    seed_windows(bootstrap, topics.aggregates, [first, second])
    feed = open_feed(bootstrap, topics, feeds, history_hours=0.25, clock_ms=lambda: clock[0])
    poll_until(feed, lambda: feed.status().caught_up)
    assert feed.windows("BTCUSDT") == [first, second]

    clock[0] += 6 * WINDOW_MS  # 15 min bound: `first` (16 min old now) falls out
    time.sleep(0.25)
    poll_until(feed, lambda: len(feed.windows("BTCUSDT")) == 1, timeout_s=5)
    assert feed.windows("BTCUSDT") == [second]


def test_metrics_count_each_batch_once_and_keep_the_latest_producer_report(
    bootstrap: str, topics: Topics, feeds: list[WindowFeed]
) -> None:
    now = now_ms()
    seed_metrics(
        bootstrap,
        topics.metrics,
        [
            spark_report("live", 1, now - 5000, watermark=now - 15000),
            spark_report("final", 1, now - 5000),
            spark_report("live", 2, now - 4000, watermark=now - 14000),
            spark_report("live", 2, now - 4000, watermark=now - 14000),  # replayed batch
            producer_report(now - 3000, published=50, http_errors={"500": 1}),
            producer_report(
                now - 1000,
                published=80,
                http_errors={"5xx": 2, "timeout": 1},
                rate_limited_429=1,
                unrecoverable_gaps=1,
            ),
            producer_report(now - 2000, published=70),  # delivered late: not the newest report
            spark_report("final", 2, now - 3000, watermark=now - 13000),
        ],
    )
    write_raw(bootstrap, topics.metrics, [(b"spark", b"{not json", None)])

    feed = open_feed(bootstrap, topics, feeds)
    poll_until(feed, lambda: feed.status().caught_up)
    health = feed.health()

    assert health.spark.batches == 4
    assert health.spark.last_batch_ms == now - 3000
    assert health.spark.watermarks_ms == {"final": now - 13000, "live": now - 14000}
    assert health.producer is not None
    assert health.producer.trades_published == 80
    assert health.producer.errors == 2 + 1 + 1
    assert health.producer.unrecoverable_gaps == 1
    assert health.bad_records == 1


def test_dead_letter_count_spans_partitions(bootstrap: str, topics: Topics, feeds: list[WindowFeed]) -> None:
    feed = open_feed(bootstrap, topics, feeds)
    poll_until(feed, lambda: feed.health().dead_letters is not None)
    assert feed.health().dead_letters == 0

    write_raw(bootstrap, topics.dead_letters, [(f"k{i}".encode(), b"bad", None) for i in range(7)])
    poll_until(feed, lambda: feed.health().dead_letters == 7, timeout_s=10)


def test_unreadable_aggregate_is_skipped_and_counted(
    bootstrap: str, topics: Topics, feeds: list[WindowFeed]
) -> None:
    good = window(minute(now_ms()) - WINDOW_MS, ["100.00"])
    write_raw(bootstrap, topics.aggregates, [(b"BTCUSDT|1", b'{"symbol":"BTCUSDT"}', None)])
    write_raw(bootstrap, topics.aggregates, [(b"BTCUSDT|2", b'{"open":"abc"}', None)])
    write_raw(bootstrap, topics.aggregates, [(b"BTCUSDT|3", b"", None)])
    zero_vwap = replace(window(minute(now_ms()) - 2 * WINDOW_MS, ["1.00"]), vwap=Decimal(0))
    seed_windows(bootstrap, topics.aggregates, [zero_vwap, good])

    feed = open_feed(bootstrap, topics, feeds)
    poll_until(feed, lambda: feed.status().caught_up)

    assert feed.windows("BTCUSDT") == [good]
    assert feed.health().bad_records == 4


def test_unreachable_broker_gives_a_clear_state_quickly(feeds: list[WindowFeed]) -> None:
    port = free_port()  # nothing listens there
    feed = WindowFeed(f"127.0.0.1:{port}", "agg", "metrics", "dlq", timeout_s=2.0)
    feeds.append(feed)

    started = time.monotonic()
    assert feed.poll(max_wait_s=0.2) == 0
    took = time.monotonic() - started

    status = feed.status()
    assert took < 3.0
    assert status.state is FeedState.UNREACHABLE
    assert f"127.0.0.1:{port}" in status.message
    assert status.last_contact_ms is None
    assert feed.wait_until_ready(0)
    assert feed.windows("BTCUSDT") == []

    # The background thread retries calmly rather than spinning while nothing answers.
    feed.start(interval_s=0.1)
    cpu_before = time.process_time()
    time.sleep(1.5)
    assert time.process_time() - cpu_before < 0.5
    assert feed.status().state is FeedState.UNREACHABLE


def test_missing_topics_are_reported_then_picked_up(bootstrap: str, feeds: list[WindowFeed]) -> None:
    topics = new_topics()
    feed = open_feed(bootstrap, topics, feeds)
    feed.poll(max_wait_s=0.2)
    assert feed.status().state is FeedState.WAITING_FOR_TOPIC
    assert topics.aggregates in feed.status().message
    assert feed.wait_until_ready(0)

    create_topics(bootstrap, [topics.aggregates, topics.metrics])
    row = window(minute(now_ms()), ["100.00"])
    seed_windows(bootstrap, topics.aggregates, [row])
    poll_until(feed, lambda: feed.windows("BTCUSDT") == [row])
    assert feed.status().state is FeedState.CONNECTED


def test_background_thread_follows_new_rows_and_stops_on_close(
    bootstrap: str, topics: Topics, feeds: list[WindowFeed]
) -> None:
    feed = open_feed(bootstrap, topics, feeds)
    feed.start(interval_s=0.1)
    assert feed.wait_until_ready(15)

    start = minute(now_ms())
    rows = [window(start, ["100.00"] * n) for n in range(1, 6)]
    seed_windows(bootstrap, topics.aggregates, rows)
    deadline = time.monotonic() + 10
    while feed.latest("BTCUSDT") != rows[-1]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert feed.latest("BTCUSDT") is not None
    assert feed.latest("BTCUSDT").vwap == Decimal("100.00000000")  # type: ignore[union-attr]

    started = time.monotonic()
    feed.close()
    assert time.monotonic() - started < 5
    assert not any(t.name == "window-feed" and t.is_alive() for t in threading.enumerate())


def test_broker_outage_is_reported_without_blocking_readers_and_recovers(
    tmp_path: Path, feeds: list[WindowFeed]
) -> None:
    """A private broker (the session one must stay up) is stopped and restarted under a running feed."""
    with LocalBroker(data_dir=tmp_path / "kafka") as broker:
        topics = new_topics()
        create_topics(broker.bootstrap_servers, [topics.aggregates, topics.metrics])
        before = window(minute(now_ms()) - WINDOW_MS, ["100.00"])
        seed_windows(broker.bootstrap_servers, topics.aggregates, [before])
        feed = open_feed(broker.bootstrap_servers, topics, feeds, timeout_s=2.0)
        feed.start(interval_s=0.1)
        assert feed.wait_until_ready(20)
        assert feed.windows("BTCUSDT") == [before]

        broker.stop()
        deadline = time.monotonic() + 15
        while feed.status().state is not FeedState.UNREACHABLE:
            assert time.monotonic() < deadline, f"outage not noticed: {feed.status()}"
            started = time.monotonic()
            assert feed.windows("BTCUSDT") == [before], "the last data stays readable"
            # Far below any Kafka timeout (2 s here), with room for a loaded CI machine.
            assert time.monotonic() - started < 0.5, "readers must not wait for Kafka"
            time.sleep(0.1)
        assert broker.bootstrap_servers in feed.status().message

        broker.start()
        after = window(minute(now_ms()), ["101.00"], first_id=5)
        seed_windows(broker.bootstrap_servers, topics.aggregates, [after])
        deadline = time.monotonic() + 45
        while feed.windows("BTCUSDT") != [before, after] or feed.status().state is not FeedState.CONNECTED:
            assert time.monotonic() < deadline, f"no recovery: {feed.status()}"
            time.sleep(0.2)

        started = time.monotonic()
        feed.close()
        assert time.monotonic() - started < 6, "close() must not wait for a poll to finish"


def test_wait_for_polls_until_the_condition_or_the_timeout(
    bootstrap: str, topics: Topics, feeds: list[WindowFeed]
) -> None:
    row = final(window(minute(now_ms()) - WINDOW_MS, ["100.00"]))
    seed_windows(bootstrap, topics.aggregates, [row])
    feed = open_feed(bootstrap, topics, feeds)

    assert feed.wait_for(lambda f: any(w.is_final for w in f.windows("BTCUSDT")), timeout_s=15)
    started = time.monotonic()
    assert not feed.wait_for(lambda f: bool(f.windows("ETHUSDT")), timeout_s=0.5)
    assert 0.5 <= time.monotonic() - started < 2


def test_readers_in_other_threads_see_consistent_state_while_the_feed_applies_rows(
    bootstrap: str, topics: Topics, feeds: list[WindowFeed]
) -> None:
    newest = minute(now_ms())
    rows = [window(newest - i * WINDOW_MS, ["100.00"] * (1 + i % 5), first_id=10 * i) for i in range(600)]
    feed = open_feed(bootstrap, topics, feeds)
    feed.start(interval_s=0.05)
    assert feed.wait_until_ready(15)

    failures: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen = feed.windows("BTCUSDT")
                starts = [w.window_start for w in seen]
                assert starts == sorted(set(starts))
                feed.health()
                feed.symbols()
            except BaseException as exc:  # handed to the test thread
                failures.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    seed_windows(bootstrap, topics.aggregates, rows)
    done = feed.wait_for(lambda f: len(f.windows("BTCUSDT")) == len(rows), timeout_s=20)
    stop.set()
    for reader in readers:
        reader.join(5)
    assert not failures, failures
    assert done
    assert feed.windows("BTCUSDT") == sorted(rows, key=lambda w: w.window_start)


def test_reconciliations_are_read_once_their_topic_exists_and_never_waited_for(
    bootstrap: str, topics: Topics, feeds: list[WindowFeed]
) -> None:
    reconciliations = unique_topic("recon")
    start = minute(now_ms()) - 5 * WINDOW_MS
    seed_windows(bootstrap, topics.aggregates, [final(window(start, ["100.00"]))])
    feed = open_feed(bootstrap, topics, feeds, reconciliation_topic=reconciliations)
    poll_until(feed, lambda: feed.status().caught_up)
    assert feed.status().state is FeedState.CONNECTED, "a pipeline without reconciliation is not waited for"
    assert feed.reconciliation().checked == 0

    create_topics(bootstrap, [reconciliations])
    matched = Reconciliation("BTCUSDT", start, ReconcileStatus.MATCHED, checked_at=1)
    mismatched = Reconciliation(
        "BTCUSDT",
        start + WINDOW_MS,
        ReconcileStatus.MISMATCHED,
        (FieldDifference("base_volume", Decimal("1.5"), Decimal("2.0")),),
        checked_at=1,
    )
    write_raw(
        bootstrap, reconciliations, [(r.key.encode(), r.to_json(), None) for r in (matched, mismatched)]
    )
    poll_until(feed, lambda: feed.reconciliation().checked == 2)
    summary = feed.reconciliation()
    assert (summary.matched, summary.mismatches) == (1, (mismatched,))
