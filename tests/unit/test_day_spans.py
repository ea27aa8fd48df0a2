"""Ranges and buckets that cut days: the hours of a day that the day tier vouches for are read
from their hourly rows without counting their windows again (``hours_of_days``), and a time
series sums the windows of such a day in SQL (``spans_of_days``), with the results of the other
paths and of the raw-sample oracle; a day whose proof fails is read as before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import processor.store.metric_queries as metric_queries
from processor.store.db import DAY_MS, HOUR_MS, open_for_writing
from processor.store.queries import Monitor
from processor.store.tier_reads import Block
from tests.unit.test_daily import D0, FILTERS, W, scenario
from tests.unit.test_hourly import build, same, same_series
from tests.unit.test_queries import MT, check_aggregation, check_series, selected

CUTS = (  # (start, end, bucket): buckets that start inside hours and windows, over day 0 and into day 1
    (D0 + 5 * HOUR_MS + 7 * W + 123, D0 + DAY_MS + 2 * HOUR_MS, 6 * HOUR_MS),
    (D0 + 17 * W, D0 + 20 * HOUR_MS + 5, HOUR_MS),
    (D0 + 1234, D0 + 9 * HOUR_MS, 7 * W),
    (D0 - 3 * W, D0 + 2 * DAY_MS - 1, DAY_MS),
)


def spied(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """The starts of the blocks ``hours_of_days`` and ``spans_of_days`` return, as the queries run."""
    seen: dict[str, list[int]] = {"hours": [], "spans": []}

    def spy(name: str, function: Callable[..., dict[int, Block]]) -> Callable[..., dict[int, Block]]:
        def wrapped(*args: Any, **kwargs: Any) -> dict[int, Block]:
            out = function(*args, **kwargs)
            seen[name] += list(out)
            return out
        return wrapped

    monkeypatch.setattr(metric_queries, "hours_of_days", spy("hours", metric_queries.hours_of_days))
    monkeypatch.setattr(metric_queries, "spans_of_days", spy("spans", metric_queries.spans_of_days))
    return seen


def check_all(db: Path, samples: list[Any]) -> None:
    with Monitor(db) as daily, Monitor(db, daily=False) as hourly, Monitor(db, hourly=False) as plain:
        for start, end, bucket in CUTS:
            for tenant, labels in FILTERS:
                expected = selected(samples, start, end, tenant, labels)
                a = daily.get_aggregation(MT, start, end, tenant, labels)
                same(a, plain.get_aggregation(MT, start, end, tenant, labels))
                check_aggregation(a, expected)
                series = daily.get_time_series(MT, start, end, bucket, labels, tenant)
                same_series(series, plain.get_time_series(MT, start, end, bucket, labels, tenant))
                same_series(series, hourly.get_time_series(MT, start, end, bucket, labels, tenant))
                check_series(series, expected, start, bucket)


def test_hours_and_windows_of_a_vouched_for_day_are_read_without_counting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples, rollups = scenario(3, odd=False)  # day 0 all final, day 1 with two open windows
    db = build(tmp_path / "d.db", samples, rollups)
    seen = spied(monkeypatch)
    check_all(db, samples)
    day0 = range(D0, D0 + DAY_MS)
    assert any(h in day0 for h in seen["hours"]) and any(s in day0 for s in seen["spans"])


def test_a_day_whose_proof_fails_is_read_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples, rollups = scenario(3, odd=False)
    db = build(tmp_path / "d.db", samples, rollups)
    conn = open_for_writing(db)  # a window of day 0 deleted behind the tiers' back: the counts see it
    conn.execute("DELETE FROM rollup_windows WHERE window_start = (SELECT MIN(window_start) FROM rollup_windows "
                 "WHERE window_start >= ?)", (D0 + 7 * HOUR_MS,))
    conn.close()
    seen = spied(monkeypatch)
    with Monitor(db) as daily, Monitor(db, hourly=False) as plain:
        for start, end, bucket in CUTS:
            for tenant, labels in FILTERS:
                same(daily.get_aggregation(MT, start, end, tenant, labels),
                     plain.get_aggregation(MT, start, end, tenant, labels))
                same_series(daily.get_time_series(MT, start, end, bucket, labels, tenant),
                            plain.get_time_series(MT, start, end, bucket, labels, tenant))
    assert not any(D0 <= b < D0 + DAY_MS for b in [*seen["hours"], *seen["spans"]])
