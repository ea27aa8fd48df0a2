"""The day tier and the kept counts: ``metric_rollups_daily`` is always the merge of its hourly
rows however the sink's batches fall, the trigger-kept counts always count the rows, and the
queries that read them give the hourly path's results, the window path's, and the raw-sample
oracle's (percentiles within the sketch's 1%), across day, hour and window boundaries."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.store.daily import daily_row
from processor.store.db import DAY_MS, HOUR_MS, open_for_writing
from processor.store.queries import Monitor
from processor.store.retention import Retention, cleanup
from processor.store.sinkdb import SinkBatch, write_batch
from tests.pg import DbAt, connect
from tests.unit.test_hourly import SERIES, build, rollup, same, same_series
from tests.unit.test_queries import MT, Sample, check_aggregation, check_series, selected

D0 = 1_700_006_400_000
"""A UTC day boundary."""
assert D0 % DAY_MS == 0
DAYS = 3
W = 60_000
FILTERS: tuple[tuple[str | None, dict[str, str] | None], ...] = (
    (None, None), ("tenant_a", None), ("tenant_b", {"region": "eu"}), (None, {"model": "large"}),
    (None, {"model": "small"}), ("tenant_z", None),
)


def scenario(seed: int, *, odd: bool) -> tuple[list[Sample], list[dict[str, Any]]]:
    """Samples over ``DAYS`` days (and an hour before) and the rollups of their windows: 60 s
    windows, final until the middle of the last day but for two windows of day 1, a few windows
    no series has a row for, one series with 120 s windows in an hour of day 1; with ``odd`` a
    7 min window of one series across an hour of day 0 too."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    for i, (tenant, labels) in enumerate(SERIES):
        for n in range(rng.randrange(600, 1400)):
            at = D0 - HOUR_MS + rng.randrange(DAYS * DAY_MS + HOUR_MS)
            samples.append(Sample(f"{i}-{n:05d}", at, round(rng.lognormvariate(5, 1), 3), MT, tenant, labels))
    wide = D0 + DAY_MS + 5 * HOUR_MS  # series 1 has 120 s windows in this hour
    odd_start = D0 + 3 * HOUR_MS - 3 * W
    dropped = {D0 + k * W for k in rng.sample(range(DAYS * 1440), 20)}
    open_here = {D0 + DAY_MS + k * W for k in rng.sample(range(1440), 2)}
    final_before = D0 + (DAYS - 1) * DAY_MS + 12 * HOUR_MS
    groups: dict[tuple[int, int, int], list[float]] = {}
    for s in samples:
        i = SERIES.index((s.tenant_id, dict(s.labels)))
        size = 2 * W if i == 1 and wide <= s.timestamp < wide + HOUR_MS else W
        start = s.timestamp - s.timestamp % size
        if odd and i == 2 and odd_start <= s.timestamp < odd_start + 7 * W:
            size, start = 7 * W, odd_start
        groups.setdefault((i, start, size), []).append(s.value)
    rollups = []
    for (i, start, size), values in sorted(groups.items(), key=lambda kv: kv[0][1]):
        if size == W and start in dropped:
            continue
        final = start + size <= final_before and start not in open_here
        rollups.append(rollup(*SERIES[i], start, size, values, final))
    return samples, rollups


def table(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def daily_rows(path: Path) -> list[tuple[Any, ...]]:
    return table(path, "SELECT * FROM metric_rollups_daily ORDER BY series, day_start")


def recomputed_daily(path: Path) -> list[tuple[Any, ...]]:
    """Every daily row from the hourly rows stored, from scratch."""
    hours: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for row in table(path, "SELECT * FROM metric_rollups_hourly ORDER BY series, hour_start"):
        hours.setdefault((row[0], row[1] - row[1] % DAY_MS), []).append(row)
    rows = [daily_row(series, day, found) for (series, day), found in sorted(hours.items())]
    return [r for r in rows if r is not None]


def counts_are_the_rows(path: Path) -> None:
    assert table(path, "SELECT metric_type, day_start, series, windows FROM metric_rollup_day_counts "
                       "ORDER BY 1, 2, 3") == table(
        path, "SELECT metric_type, window_start - window_start % 86400000, series, COUNT(*) FROM metric_rollups "
              "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    assert table(path, "SELECT metric_type, tenant, samples FROM metric_counts ORDER BY 1, 2") == table(
        path, "SELECT metric_type, COALESCE(tenant_id, ''), COUNT(*) FROM performance_metrics GROUP BY 1, 2 ORDER BY 1, 2")


def ranges(rng: random.Random) -> list[tuple[int, int]]:
    span = DAYS * DAY_MS
    out = [(D0, D0 + span), (D0, D0 + 2 * DAY_MS), (D0 + DAY_MS, D0 + 2 * DAY_MS), (D0 - W, D0 + span + W),
           (D0 + 1, D0 + 2 * DAY_MS - 1), (D0 + 5 * HOUR_MS + 7, D0 + 2 * DAY_MS + 3 * HOUR_MS)]
    for _ in range(2):
        a, b = sorted(rng.randrange(-HOUR_MS, span + HOUR_MS) for _ in range(2))
        out.append((D0 + a, D0 + b + 1))
    return out


def test_the_day_tier_gives_the_hourly_path_the_window_path_and_the_oracle(tmp_path: Path) -> None:
    used_daily = 0
    for seed in range(2):
        odd = seed % 2 == 1
        samples, rollups = scenario(seed, odd=odd)
        db = build(tmp_path / f"d{seed}.db", samples, rollups, batch=211)
        rng = random.Random(seed)
        with Monitor(db) as daily, Monitor(db, daily=False) as hourly, Monitor(db, hourly=False) as plain:
            for start, end in ranges(rng):
                for tenant, labels in FILTERS:
                    a = daily.get_aggregation(MT, start, end, tenant, labels)
                    same(a, plain.get_aggregation(MT, start, end, tenant, labels))
                    same(a, {**hourly.get_aggregation(MT, start, end, tenant, labels), "from_hourly": 0}
                         if a is not None else None)
                    used_daily += a["from_daily"] if a else 0
                    expected = selected(samples, start, end, tenant, labels)
                    if not odd:  # a window that starts before the range is missed by every path alike
                        check_aggregation(a, expected)
                    for interval in (DAY_MS, rng.choice((HOUR_MS, 2 * DAY_MS, 6 * HOUR_MS, 7 * W))):
                        series = daily.get_time_series(MT, start, end, interval, labels, tenant)
                        same_series(series, plain.get_time_series(MT, start, end, interval, labels, tenant))
                        same_series(series, hourly.get_time_series(MT, start, end, interval, labels, tenant))
                        if not odd:
                            check_series(series, expected, start, interval)
    assert used_daily > 0


def test_whole_final_days_come_from_daily_rows(db: DbAt) -> None:
    samples, rollups = scenario(5, odd=False)
    db = build(db("d.db"), samples, rollups)
    with Monitor(db, types=False) as monitor:  # the per-series tier (the per-type one: test_type_tier.py)
        # day 0: every series final, one size; day 1: two open windows; day 2: open from noon
        result = monitor.get_aggregation(MT, D0, D0 + DAYS * DAY_MS)
        assert result is not None and result["from_daily"] == len(SERIES)
        small = monitor.get_aggregation(MT, D0, D0 + DAYS * DAY_MS, labels={"model": "small"})
        assert small is not None and small["from_daily"] >= 1  # day 1 too, unless it has an open window
        series = monitor.get_time_series(MT, D0, D0 + DAYS * DAY_MS, DAY_MS)
    check_aggregation(result, selected(samples, D0, D0 + DAYS * DAY_MS))
    check_series(series, selected(samples, D0, D0 + DAYS * DAY_MS), D0, DAY_MS)
    # a window of day 0 deleted, or added, behind the tiers' back: the counts see it
    conn = open_for_writing(db)
    conn.execute("DELETE FROM rollup_windows WHERE window_start = (SELECT MIN(window_start) FROM rollup_windows "
                 "WHERE window_start >= ?)", (D0 + 7 * HOUR_MS,))
    conn.close()
    with Monitor(db) as monitor, Monitor(db, hourly=False) as plain:
        changed = monitor.get_aggregation(MT, D0, D0 + DAYS * DAY_MS)
        same(changed, plain.get_aggregation(MT, D0, D0 + DAYS * DAY_MS))
        assert changed is not None and changed["from_daily"] == 0


def test_the_daily_rows_and_counts_do_not_depend_on_batching(db: DbAt) -> None:
    """Open snapshots first (shuffled, small batches), then the windows as they end up, resent
    in part; or all at once: after every batch the daily rows are the merge of the hourly rows,
    and the counts count the rows; the same rows either way; cleanup keeps them so."""
    samples, rollups = scenario(9, odd=True)
    one = build(db("one.db"), samples, rollups, batch=len(rollups))
    rng = random.Random(2)
    early = [dict(r, final=False, count=1) for r in rollups if rng.random() < 0.5]
    rng.shuffle(early)
    db = db("two.db")
    conn = open_for_writing(db)
    events = [*early, *rollups, *rng.sample(rollups, 200)]
    at = 0
    while at < len(events):
        size = rng.choice((1, 9, 60, 500))
        batch = SinkBatch()
        for r in events[at:at + size]:
            batch.add_rollup(r)
        write_batch(conn, batch, written_at_ms=0)
        at += size
        if rng.random() < 0.2:
            assert daily_rows(db) == recomputed_daily(db)
            counts_are_the_rows(db)
    conn.close()
    assert daily_rows(db) == recomputed_daily(db) == daily_rows(one) and len(daily_rows(db)) >= DAYS * len(SERIES)
    counts_are_the_rows(one)
    conn = open_for_writing(one)
    cleanup(conn, D0 + DAY_MS + 5 * HOUR_MS + 17 * W + Retention().rollups_ms)
    cleanup(conn, D0 + DAY_MS + Retention().samples_ms)
    conn.close()
    assert daily_rows(one) == recomputed_daily(one)
    counts_are_the_rows(one)


def test_metric_counts_are_kept_by_every_write_and_ignore_redelivery(db: DbAt) -> None:
    samples, _ = scenario(3, odd=False)
    db = build(db("c.db"), samples[:500], [])
    conn = open_for_writing(db)
    from schemas.events import MetricRecorded

    more = [MetricRecorded(event_id=s.id, occurred_at=s.timestamp, tenant_id=s.tenant_id, metric_type="cache.hit_rate",
                           value=s.value, labels=dict(s.labels)) for s in samples[400:900]]
    for _ in range(2):  # the same batch again, as after a crash before the commit to Kafka
        batch = SinkBatch()
        for s in more:
            batch.add_sample(s)
        write_batch(conn, batch, written_at_ms=0)
    conn.close()
    counts_are_the_rows(db)
    with Monitor(db) as m:
        assert m.get_metric_count() == 500 + 400
        assert m.get_metric_count(MT) == 500
        assert m.get_metric_count("cache.hit_rate") == 400
        assert m.get_metric_count(MT, "tenant_a") == sum(1 for s in samples[:500] if s.tenant_id == "tenant_a")
        assert m.get_metric_count(tenant_id="tenant_b") == sum(1 for s in samples[:900] if s.tenant_id == "tenant_b")
        assert m.get_metric_count(tenant_id="") == 0 and m.get_metric_count("nope") == 0


# -- property: any samples, any finality, any range and filter, through the sink ---------------

TENANTS = (None, "tenant_a", "tenant_b")
LABELS: tuple[dict[str, str], ...] = ({}, {"model": "large"}, {"model": "small"}, {"model": "large", "region": "eu"})
_SPAN = 2 * DAY_MS + 2 * HOUR_MS
_moments = st.one_of(
    st.integers(0, _SPAN - 1),
    st.integers(0, 2 * 24 + 1).flatmap(lambda h: st.integers(h * HOUR_MS, h * HOUR_MS + 3 * W)),
)
samples_strategy = st.lists(
    st.tuples(_moments, st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
              st.sampled_from(TENANTS), st.integers(0, len(LABELS) - 1)),
    min_size=5, max_size=120,
).map(lambda items: [
    Sample(f"s{i:05d}", D0 - HOUR_MS + at, value, MT, tenant, LABELS[label])
    for i, (at, value, tenant, label) in enumerate(items)
])
_edges = st.one_of(
    st.integers(-HOUR_MS, _SPAN),
    st.integers(-1, 3).map(lambda k: k * DAY_MS),
    st.integers(-1, 50).map(lambda k: k * HOUR_MS),
    st.integers(-1, 50).map(lambda k: k * HOUR_MS + W),
).map(lambda offset: D0 + offset)
"""Range ends: anywhere, or on a day, hour or window boundary (so whole blocks fall inside)."""
_FILTERS = (*FILTERS, ("tenant_b", {}), (None, {"region": "eu"}))


def _through_the_sink(path: Path, samples: Sequence[Sample], final_before: int, batch: int) -> None:
    from schemas.events import MetricRecorded

    groups: dict[tuple[Any, ...], list[float]] = {}
    for s in samples:
        groups.setdefault((s.tenant_id, tuple(sorted(s.labels.items())), s.timestamp - s.timestamp % W), []).append(s.value)
    rollups = [rollup(t, dict(ls), start, W, values, start + W <= final_before)
               for (t, ls, start), values in sorted(groups.items(), key=lambda kv: kv[0][2])]
    records = [MetricRecorded(event_id=s.id, occurred_at=s.timestamp, tenant_id=s.tenant_id, metric_type=MT,
                              value=s.value, unit="ms", labels=dict(s.labels)) for s in samples]
    conn = open_for_writing(path)
    for k in range(0, max(len(records), len(rollups)), batch):
        b = SinkBatch()
        for r in records[k:k + batch]:
            b.add_sample(r)
        for r in rollups[k:k + batch]:
            b.add_rollup(r)
        write_batch(conn, b, written_at_ms=0)
    conn.close()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples_strategy, st.integers(-1, 2 * 24 + 2), _edges, _edges,
       st.sampled_from((DAY_MS, HOUR_MS, 2 * DAY_MS, 7 * HOUR_MS, 90 * W)), st.sampled_from((1, 17, 1000)))
def test_queries_equal_the_oracle_across_tiers(
    samples: list[Sample], final_hours: int, a: int, b: int, interval: int, batch: int
) -> None:
    start, end = min(a, b), max(a, b) + 1
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "p.db"
        _through_the_sink(db, samples, D0 - HOUR_MS + final_hours * HOUR_MS, batch)
        with Monitor(db) as monitor:
            for tenant, labels in _FILTERS:
                expected = selected(samples, start, end, tenant, labels)
                check_aggregation(monitor.get_aggregation(MT, start, end, tenant, labels), expected)
                check_series(monitor.get_time_series(MT, start, end, interval, labels, tenant), expected, start, interval)
                assert monitor.get_metric_count(MT, tenant) == len(selected(samples, -1, 2**62, tenant))
            assert monitor.get_metric_count() == len(samples)
