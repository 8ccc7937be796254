"""The feed's metadata and offset requests, each with a deadline.

KafkaConsumer's blocking helpers (`partitions_for_topic` for a topic not in its metadata yet,
`offsets_for_times`, `beginning_offsets`, `end_offsets`) wait on their futures with
`KafkaClient.poll(future=...)`, which ignores any timeout. While a partition's leader is a node that
died and the controller has not fenced yet (`broker.session.timeout.ms`), the offset lookups retry
until `request_timeout_ms` and raise, and the metadata refreshes among them wait for as long as no
node takes the request. Here the same requests are sent and the client is driven only until a
deadline: every call returns in time and says whether it got an answer, and the caller decides what
a missing answer means.

kafka-python-ng has no public call with a deadline for either, so this reaches into KafkaConsumer's
client and fetcher (kafka-python-ng is pinned in requirements.txt); nothing else in the app does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import NodeNotReadyError

# ListOffsets' special timestamps: the log end offset and the log start offset.
LATEST = -1
EARLIEST = -2

_STEP_MS = 100  # the longest the client waits in one step, so a deadline is overrun by at most this


def _settle(client: Any, future: Any, deadline: float) -> bool:
    """Drive the client until `future` is done (True) or `deadline` (time.monotonic()) passes."""
    while not future.is_done:
        remaining_ms = (deadline - time.monotonic()) * 1000
        if remaining_ms <= 0 or client._closed:  # closed by WindowFeed.close(): poll() returns at once
            return False
        client.poll(timeout_ms=min(remaining_ms, _STEP_MS))
    return True


def refresh_metadata(consumer: KafkaConsumer, deadline: float) -> bool:
    """Ask a broker for the metadata of every topic; True if one answered in time.

    Every topic, not only the assigned ones: the feed also measures the dead-letter topic and
    watches for topics created later, and a refresh keeps only the topics it asked for."""
    client = consumer._client
    client.cluster.need_all_topic_metadata = True
    while _settle(client, future := client.cluster.request_update(), deadline):
        if future.succeeded():
            return True
        # The broker asked went away mid-request (a node killed): ask another until the deadline.
    return False


def partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition] | None:
    """The topic's partitions as of the last metadata refresh; None if the topic was not there."""
    found = consumer._client.cluster.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(found)] if found else None


def offsets(
    consumer: KafkaConsumer, timestamps: Mapping[TopicPartition, int], deadline: float
) -> dict[TopicPartition, int | None] | None:
    """Each partition's first offset at or after its timestamp (LATEST: the end, EARLIEST: the
    start), None for a partition without such a record; None altogether unless every partition's
    leader answered before the deadline.

    Asked again while a leader's connection is still being made or a leader moved; not while a
    leader refuses connections (a node that is down, not fenced yet): that waits for the next call.
    Raises the request's error only if asking again could not help (an authorization failure, say)."""
    if not timestamps:
        return {}
    client = consumer._client
    while time.monotonic() < deadline:
        future = consumer._fetcher._send_offset_requests(dict(timestamps))
        if not _settle(client, future, deadline):
            return None
        if future.succeeded():
            found: dict[TopicPartition, tuple[int, int | None]] = future.value
            return {tp: found[tp][0] if tp in found else None for tp in timestamps}
        error = future.exception
        if not future.retriable():
            raise error
        if error.invalid_metadata:
            _settle(client, client.cluster.request_update(), deadline)
        elif isinstance(error, NodeNotReadyError) and not client.is_disconnected(error.args[0]):
            client.poll(timeout_ms=_STEP_MS)  # the connection is being made
        else:
            return None
    return None
