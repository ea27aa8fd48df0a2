"""Stretches of whole hours of one bucket summed in SQL from the per-metric-type tier for a time
series (processor.store.type_reads.summed_stretches): the same points as the per-series tiers
and the raw-sample oracle, and a stretch with an hour that does not stand for its windows (a
missing minute, an open window, no windows at all) read hour by hour instead."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import processor.store.type_reads as type_reads
from processor.store.db import DAY_MS, HOUR_MS
from processor.store.queries import Monitor
from processor.store.type_reads import stretches
from tests.pg import DbAt
from tests.unit.test_daily import D0
from tests.unit.test_hourly import build, same_series
from tests.unit.test_queries import MT, Sample, check_series, selected
from tests.unit.test_type_tier import TYPED_FILTERS, _windows

W = 60_000
FIRST = D0 + 18 * HOUR_MS
"""The samples span 12 hours from here, across a UTC midnight."""
HOURS = 12


def _dense(seed: int) -> tuple[list[Sample], int]:
    """Samples of three series: one with a sample in every minute (so every hour's type row
    covers all its windows) and two sparse ones, none in the holes below; and the time before
    which windows are final."""
    rng = random.Random(seed)
    series = [("tenant_a", {"model": "large"}), ("tenant_b", {}), (None, {"model": "small"})]
    missing = {FIRST + 3 * HOUR_MS + 17 * W}  # hour 3 has a minute without a window
    empty = range(FIRST + 8 * HOUR_MS, FIRST + 9 * HOUR_MS)  # hour 8: no samples at all
    samples: list[Sample] = []
    for minute in range(FIRST, FIRST + HOURS * HOUR_MS, W):
        if minute in missing or minute in empty:
            continue
        for _ in range(rng.randrange(1, 3)):
            samples.append(Sample(f"d{len(samples):05d}", minute + rng.randrange(W), rng.uniform(-5, 500), MT, *series[0]))
        for tenant, labels in series[1:]:
            if rng.random() < 0.2:
                samples.append(Sample(f"d{len(samples):05d}", minute + rng.randrange(W), float(rng.randrange(1000)), MT,
                                      tenant, labels))
    return samples, FIRST + 10 * HOUR_MS + 30 * W  # hour 10 has open windows from its 30th minute


def _summed_spans(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Records each stretch read summed, as ``(lo, hi)``."""
    summed: list[tuple[int, int]] = []
    real = type_reads.summed_stretches

    def keeping(tuples: Any, where: Any, spans: Sequence[tuple[int, int]]) -> Any:
        out = real(tuples, where, spans)
        summed.extend((lo, lo + block.length) for lo, block in out.items())
        return out

    monkeypatch.setattr(type_reads, "summed_stretches", keeping)
    return summed


@pytest.mark.parametrize("seed", range(2))
def test_summed_stretches_give_the_per_series_tiers_and_the_oracle(db: DbAt, seed: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    samples, final_before = _dense(seed)
    path = build(db("s.db"), samples, _windows(samples, final_before), batch=211)
    summed = _summed_spans(monkeypatch)
    rng = random.Random(seed)
    ranges = [(FIRST, FIRST + HOURS * HOUR_MS), (FIRST - 7 * W, FIRST + HOURS * HOUR_MS + 13)]
    ranges += [tuple(sorted(FIRST + rng.randrange(-HOUR_MS, (HOURS + 1) * HOUR_MS) for _ in range(2))) for _ in range(4)]
    with Monitor(path) as typed, Monitor(path, types=False) as finer:
        for start, end in ranges:
            end = max(end, start + 1)
            for tenant, labels in TYPED_FILTERS:
                expected = selected(samples, start, end, tenant, labels)
                for interval in (DAY_MS, 5 * HOUR_MS, 3 * HOUR_MS + 7 * W, 2 * HOUR_MS):
                    points = typed.get_time_series(MT, start, end, interval, labels, tenant)
                    same_series(points, finer.get_time_series(MT, start, end, interval, labels, tenant))
                    check_series(points, expected, start, interval)
    assert summed  # some stretches were summed, and (hours 3, 8 and 10 inside them) some were not


def test_a_stretch_is_summed_only_when_every_hour_stands_for_all_its_windows(db: DbAt,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    samples, final_before = _dense(5)
    path = build(db("s.db"), samples, _windows(samples, final_before))
    summed = _summed_spans(monkeypatch)
    with Monitor(path) as typed:
        typed.get_time_series(MT, FIRST, FIRST + HOURS * HOUR_MS, 4 * HOUR_MS)  # buckets: hours 0-3, 4-7, 8-11
    # hours 0-3: hour 3 misses a minute (of every series); 4-7: whole; 8-11: hour 8 has no
    # windows, hour 10 open ones. A stretch with one hour that does not stand is read hour by hour
    assert summed == [(FIRST + 4 * HOUR_MS, FIRST + 8 * HOUR_MS)]


@given(st.lists(st.integers(0, 60), unique=True).map(sorted), st.integers(0, 3 * HOUR_MS),
       st.sampled_from([HOUR_MS, 2 * HOUR_MS, 5 * HOUR_MS + W, DAY_MS]))
def test_stretches_are_the_runs_of_two_or_more_consecutive_hours_of_one_bucket(hours: list[int], offset: int,
                                                                               bucket_ms: int) -> None:
    starts = [D0 + h * HOUR_MS for h in hours]
    start = D0 + offset
    out = stretches(starts, start, bucket_ms)
    covered = [h for lo, hi in out for h in range(lo, hi, HOUR_MS)]
    assert covered == sorted(covered) and set(covered) <= set(starts)
    for lo, hi in out:
        assert hi - lo >= 2 * HOUR_MS and (lo - start) // bucket_ms == (hi - HOUR_MS - start) // bucket_ms
    for h in starts:  # an hour left out has no neighbour of its bucket in the list
        if h not in covered:
            bucket = (h - start) // bucket_ms
            assert all(n not in starts or (n - start) // bucket_ms != bucket for n in (h - HOUR_MS, h + HOUR_MS))
