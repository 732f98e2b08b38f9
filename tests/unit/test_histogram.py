"""LoopHistogram against prometheus_client's Histogram: the same samples for the same values."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streams.observability.histogram import LoopHistogram
from streams.observability.metrics import LATENCY_BUCKETS

# On a bound, just either side of one, below the first, above the last, and zero.
VALUES = [0.0, 0.001, 0.0011, 0.0049, 0.005, 0.7, 2.5, 299.9, 300.0, 301.0, 1e6]


def exposition(registry: CollectorRegistry) -> list[str]:
    # The client's histogram adds a _created sample (a timestamp); ours has none.
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_unlabelled_exposition_is_the_clients() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = LoopHistogram("h_seconds", "Help.", buckets=LATENCY_BUCKETS, registry=ours)
    reference = Histogram("h_seconds", "Help.", buckets=LATENCY_BUCKETS, registry=theirs)
    for value in VALUES:
        mine.observe(value)
        reference.observe(value)
    assert exposition(ours) == exposition(theirs)


def test_labelled_series_are_counted_apart_as_the_clients_are() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = LoopHistogram("r_seconds", "Help.", ["endpoint"], buckets=(0.1, 1.0), registry=ours)
    reference = Histogram("r_seconds", "Help.", ["endpoint"], buckets=(0.1, 1.0),
                          registry=theirs)  # fmt: skip
    for endpoint, value in [("/a", 0.05), ("/b", 0.1), ("/a", 3.0), ("/b", 0.5)]:
        mine.labels(endpoint).observe(value)
        reference.labels(endpoint).observe(value)
    assert exposition(ours) == exposition(theirs)
    assert 'r_seconds_bucket{endpoint="/b",le="0.1"} 1.0' in exposition(ours)


def test_misuse_is_refused() -> None:
    registry = CollectorRegistry()
    labelled = LoopHistogram("x_seconds", "Help.", ["endpoint"], buckets=(1.0,), registry=registry)
    with pytest.raises(ValueError, match="takes labels"):
        labelled.labels("/a", "extra")
    with pytest.raises(ValueError, match="increasing"):
        LoopHistogram("y_seconds", "Help.", buckets=(1.0, 0.5), registry=registry)
