"""Fixtures for the dashboard tests: a fresh set of pipeline topics on the session broker."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from app.dashboard.feed import WindowFeed
from tests.support.kafka import create_topics, unique_topic


@dataclass(frozen=True)
class Topics:
    aggregates: str
    metrics: str
    dead_letters: str


def new_topics() -> Topics:
    return Topics(unique_topic("agg"), unique_topic("metrics"), unique_topic("dlq"))


@pytest.fixture
def topics(bootstrap: str) -> Topics:
    made = new_topics()
    create_topics(bootstrap, [made.aggregates, made.metrics])
    create_topics(bootstrap, [made.dead_letters], partitions=2)
    return made


@pytest.fixture
def feeds() -> Iterator[list[WindowFeed]]:
    """Feeds a test opens, closed afterwards whatever happens."""
    opened: list[WindowFeed] = []
    yield opened
    for feed in opened:
        feed.close()
