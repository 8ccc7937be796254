"""The dashboard's feed on a 3-node cluster while one node is down: SIGKILL of the node leading a
dead-letter partition (so both the feed's reads and its dead-letter measure meet the dead node,
before and after the controller fences it). The feed must stay connected, every poll must come back
within the feed's request timeout, and it must go on showing new windows and counting dead letters
while the node is still down."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.common.settings import Settings
from app.common.topics import ensure_topics
from app.dashboard.feed import FeedState, WindowFeed
from app.localkafka.broker import LocalCluster
from tests.dashboard.helpers import minute, now_ms, seed_windows, window
from tests.support.cluster import leaders, led_elsewhere, wait_healthy
from tests.support.kafka import write_raw
from tests.support.pipeline import new_topic_names, run_env

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")  # keys that spread over both partitions
TIMEOUT_S = 2.0  # the feed's request timeout
POLL_BOUND_S = TIMEOUT_S + 1.5  # one fetch step and one check, with room for a loaded machine
HEALTH_TIMEOUT_S = 180.0


def dead_letters(topic: str, count: int, bootstrap: str) -> None:
    write_raw(bootstrap, topic, [(f"bad{i}".encode(), b"not json", None) for i in range(count)])


def test_feed_stays_connected_and_bounded_while_a_node_is_down(
    kafka_cluster: LocalCluster, tmp_path: Path
) -> None:
    bootstrap = kafka_cluster.bootstrap_servers
    settings = Settings.from_env(run_env(bootstrap, new_topic_names(), tmp_path, SYMBOLS))
    ensure_topics(settings, 2, 3, 2)
    topics = [settings.aggregates_topic, settings.metrics_topic, settings.dead_letter_topic]
    wait_healthy(kafka_cluster, topics, HEALTH_TIMEOUT_S)
    start = minute(now_ms())
    before = [window(start - 60_000, ["100.00"], symbol=s) for s in SYMBOLS]
    seed_windows(bootstrap, settings.aggregates_topic, before)
    dead_letters(settings.dead_letter_topic, 6, bootstrap)

    feed = WindowFeed.from_settings(settings, timeout_s=TIMEOUT_S, offsets_every_s=0.5)
    states: set[FeedState] = set()
    slowest = 0.0

    def poll_until(done: Callable[[], bool], timeout_s: float, what: str) -> None:
        nonlocal slowest
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, f"{what}: not in {timeout_s} s; {feed.status()}"
            started = time.monotonic()
            feed.poll(max_wait_s=0.2)
            slowest = max(slowest, time.monotonic() - started)
            states.add(feed.status().state)

    victim = leaders(bootstrap, settings.dead_letter_topic)[0]
    moved = {
        topic: [p for p, node in leaders(bootstrap, topic).items() if node == victim]
        for topic in (settings.dead_letter_topic, settings.aggregates_topic)
    }
    try:
        poll_until(lambda: feed.health().dead_letters == 6 and len(feed.symbols()) == 4, 60, "caught up")
        assert states == {FeedState.CONNECTED}

        kafka_cluster.node(victim).kill()
        killed_at = time.monotonic()
        # Polled throughout the fencing (broker.session.timeout.ms) and the election.
        poll_until(lambda: time.monotonic() - killed_at > 2.0, 10, "the first seconds")
        for topic, partitions in moved.items():
            poll_until(lambda t=topic, ps=partitions: led_elsewhere(bootstrap, t, ps, victim), 60,
                       f"new leaders of {topic}")  # fmt: skip

        # Still with one node down: new windows and new dead letters show.
        after = [window(start, ["101.00"], symbol=s, first_id=5) for s in SYMBOLS]
        seed_windows(bootstrap, settings.aggregates_topic, after)
        dead_letters(settings.dead_letter_topic, 4, bootstrap)
        poll_until(
            lambda: feed.health().dead_letters == 10 and all(feed.latest(s) in after for s in SYMBOLS),
            60,
            "the windows and dead letters written while a node is down",
        )
        assert kafka_cluster.node(victim).process is None, "the node stayed down throughout"
        assert states == {FeedState.CONNECTED}, f"the feed left the connected state: {states}"
        assert slowest <= POLL_BOUND_S, f"a poll took {slowest:.1f} s"
    finally:
        feed.close()
        kafka_cluster.node(victim).start(timeout_s=HEALTH_TIMEOUT_S)
        wait_healthy(kafka_cluster, topics, HEALTH_TIMEOUT_S)
