"""The per-metric-type tier (schema 10): ``type_hours`` and ``type_days`` are always the merge of
their finer rows however the sink's batches fall (and after retention), the queries that read them
give the per-series tiers' results and the raw-sample oracle's across window, hour and day
boundaries, with and without a tenant filter, a block whose type row does not stand for the
windows stored is read finer, and the percentiles are within the stated error bound."""

from __future__ import annotations

import math
import random
import shutil
import tempfile
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.folds.sketch import DEFAULT_RELATIVE_ACCURACY, MIN_MAGNITUDE
from processor.store.db import DAY_MS, HOUR_MS, open_for_writing
from processor.store.metric_queries import edges_of, nearest_rank, probed
from processor.store.queries import Monitor
from processor.store.retention import Retention, cleanup
from processor.store.tier_reads import Filter
from processor.store.type_tier import rebuild_types
from tests.pg import DbAt, connect
from tests.unit.test_daily import D0, DAYS, scenario
from tests.unit.test_hourly import SERIES, build, rollup, same, same_series
from tests.unit.test_queries import MT, Sample, check_aggregation, check_series, selected

W = 60_000
QS = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
TYPED_FILTERS: tuple[tuple[str | None, dict[str, str] | None], ...] = (
    (None, None), ("tenant_a", None), ("tenant_b", None), ("tenant_z", None),
)
"""The filters the tier answers (no labels), and one with labels that it leaves to the per-series tiers."""
ALL_FILTERS = (*TYPED_FILTERS, (None, {"model": "large"}), ("tenant_a", {"model": "small"}))


def table(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def type_rows(path: Path) -> list[tuple[Any, ...]]:
    return [*table(path, "SELECT * FROM type_hours ORDER BY 1, 2, 3"), *table(path, "SELECT * FROM type_days ORDER BY 1, 2, 3")]


def recomputed(path: Path, tmp: Path) -> list[tuple[Any, ...]]:
    """The type rows rebuilt from scratch (:func:`rebuild_types`) on a copy of the database."""
    copy = tmp / "copy.db"
    shutil.copy(path, copy)
    conn = open_for_writing(copy)
    conn.execute("BEGIN")
    rebuild_types(conn)
    conn.execute("COMMIT")
    conn.close()
    return type_rows(copy)


def test_type_rows_are_the_merge_of_their_finer_rows_however_batches_fall(tmp_path: Path) -> None:
    samples, rollups = scenario(3, odd=True)
    first = build(tmp_path / "a.db", samples, rollups, batch=53)
    second = build(tmp_path / "b.db", samples, rollups, batch=1_000)
    rows = type_rows(first)
    assert rows and rows == type_rows(second) == recomputed(first, tmp_path)
    tenants = {r[1] for r in rows}
    assert tenants == {"", "tenant_a", "tenant_b"}  # the series without a tenant only across tenants
    conn = open_for_writing(first)
    cleanup(conn, D0 + 2 * DAY_MS, Retention(executions_ms=10 * DAY_MS, samples_ms=10 * DAY_MS,
                                             rollups_ms=DAY_MS + 7 * HOUR_MS))
    conn.close()
    after = type_rows(first)
    assert after != rows and after == recomputed(first, tmp_path)


def test_whole_final_blocks_come_from_one_type_row_per_block(tmp_path: Path) -> None:
    samples, rollups = scenario(5, odd=False)
    db = build(tmp_path / "t.db", samples, rollups)
    with Monitor(db) as typed, Monitor(db, types=False) as series:
        whole = typed.get_aggregation(MT, D0, D0 + DAYS * DAY_MS)
        finer = series.get_aggregation(MT, D0, D0 + DAYS * DAY_MS)
        assert whole is not None and finer is not None
        # day 0 is final and of one size (day 1 has two open windows, day 2 is open from noon)
        assert whole["from_daily"] == 1 and finer["from_daily"] == len(SERIES)
        assert whole["from_hourly"] < finer["from_hourly"]
        same(whole, {**finer, "from_hourly": 0})
        tenant = typed.get_aggregation(MT, D0, D0 + DAYS * DAY_MS, "tenant_a")
        assert tenant is not None and tenant["from_daily"] == 1
        labelled = typed.get_aggregation(MT, D0, D0 + DAYS * DAY_MS, "tenant_a", {"model": "small"})
        assert labelled is not None and labelled["from_daily"] >= 1  # its one series' daily rows
        nobody = typed.get_aggregation(MT, D0, D0 + DAY_MS, "tenant_z")
        assert nobody is None
        points = typed.get_time_series(MT, D0, D0 + DAYS * DAY_MS, DAY_MS)
        same_series(points, series.get_time_series(MT, D0, D0 + DAYS * DAY_MS, DAY_MS))


def compared(typed: Monitor, finer: Monitor, samples: Sequence[Sample], start: int, end: int,
             intervals: Sequence[int], filters: Sequence[tuple[str | None, dict[str, str] | None]] = ALL_FILTERS,
             *, oracle: bool = True) -> int:
    """Every query of ``filters`` over ``[start, end)``: the tier's results equal the per-series
    tiers' and the oracle's. Returns the type rows read (hourly and daily)."""
    used = 0
    for tenant, labels in filters:
        a = typed.get_aggregation(MT, start, end, tenant, labels)
        b = finer.get_aggregation(MT, start, end, tenant, labels)
        same(a, b if b is None else {**b, "from_hourly": 0})
        used += a["from_hourly"] + a["from_daily"] if a is not None and not labels else 0
        expected = selected(samples, start, end, tenant, labels)
        if oracle:
            check_aggregation(a, expected)
        for interval in intervals:
            points = typed.get_time_series(MT, start, end, interval, labels, tenant)
            same_series(points, finer.get_time_series(MT, start, end, interval, labels, tenant))
            if oracle:
                check_series(points, expected, start, interval)
    return used


def test_the_tier_gives_the_per_series_tiers_and_the_oracle_across_boundaries(tmp_path: Path) -> None:
    samples, rollups = scenario(2, odd=False)
    db = build(tmp_path / "t.db", samples, rollups, batch=131)
    rng = random.Random(2)
    ranges = [(D0, D0 + DAYS * DAY_MS), (D0 - W, D0 + 2 * DAY_MS + 1), (D0 + 3 * HOUR_MS, D0 + DAY_MS + 5 * HOUR_MS),
              (D0 + 17, D0 + DAY_MS - 17), (D0 + DAY_MS - HOUR_MS, D0 + DAY_MS + HOUR_MS)]
    ranges += [tuple(sorted(D0 + rng.randrange(-HOUR_MS, DAYS * DAY_MS) for _ in range(2))) for _ in range(4)]
    used = 0
    with Monitor(db) as typed, Monitor(db, types=False) as finer:
        for start, end in ranges:
            used += compared(typed, finer, samples, start, end + 1 if start == end else end,
                             (DAY_MS, HOUR_MS, rng.choice((6 * HOUR_MS, 7 * W, 2 * DAY_MS))))
    assert used > 0


def _windows(samples: Sequence[Sample], final_before: int) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[float]] = {}
    for s in samples:
        groups.setdefault((s.tenant_id, tuple(sorted(s.labels.items())), s.timestamp - s.timestamp % W), []).append(s.value)
    return [rollup(tenant, dict(labels), start, W, values, start + W <= final_before)
            for (tenant, labels, start), values in sorted(groups.items(), key=lambda kv: (kv[0][2], repr(kv[0])))]


LABELS = ({"model": "large"}, {"model": "small"}, {})
TENANTS = (None, "tenant_a", "tenant_b")
EDGE = D0 + DAY_MS
"""The day boundary the generated samples lie around (an hour before it, two after)."""
values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-3, max_value=1e9, allow_nan=False),
    st.sampled_from((0.0, 1e-12, -3e-10, 1.0)),
)
generated = st.lists(
    st.tuples(st.integers(-HOUR_MS, 2 * HOUR_MS - 1), values, st.sampled_from(TENANTS), st.integers(0, len(LABELS) - 1)),
    min_size=1, max_size=200,
).map(lambda items: [Sample(f"g{i:04d}", EDGE + at, v, MT, tenant, LABELS[label])
                     for i, (at, v, tenant, label) in enumerate(items)])
ends = st.one_of(
    st.integers(-HOUR_MS - W, 2 * HOUR_MS + W),
    st.integers(-1, 2).map(lambda k: k * HOUR_MS),
    st.integers(-60, 120).map(lambda k: k * W),
).map(lambda at: EDGE + at)
"""Range ends anywhere, on an hour boundary (whole hours inside), or on a window boundary."""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated, st.integers(-60, 121), ends, ends, st.integers(1, 50))
def test_any_range_and_tenant_equals_the_oracle_and_the_per_series_tiers(
    samples: list[Sample], final_minutes: int, a: int, b: int, batch: int
) -> None:
    start, end = min(a, b), max(a, b) + 1
    rollups = _windows(samples, EDGE + final_minutes * W)
    with tempfile.TemporaryDirectory() as folder:
        db = build(Path(folder) / "g.db", samples, rollups, batch=batch)
        with Monitor(db) as typed, Monitor(db, types=False) as finer:
            compared(typed, finer, samples, start, end, (HOUR_MS, 7 * W))
            compared(typed, finer, samples, EDGE - HOUR_MS, EDGE + 2 * HOUR_MS, (HOUR_MS,), TYPED_FILTERS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated, st.sampled_from(TYPED_FILTERS[:3]))
def test_percentiles_from_the_tier_are_within_the_stated_error_of_the_exact_ones(
    samples: list[Sample], where: tuple[str | None, dict[str, str] | None]
) -> None:
    """The stated bound (README.md, "The percentile error bound"; BENCHMARKS.md): p50, p95 and p99 are of the exact
    nearest rank (``ceil(n q) - 1``: no rank error), their value within a relative
    :data:`DEFAULT_RELATIVE_ACCURACY` (1%) of the exact value, and values within
    :data:`MIN_MAGNITUDE` of zero reported as 0; read here across an hour and a day boundary,
    whole hours from the per-metric-type tier."""
    rollups = _windows(samples, EDGE + 3 * HOUR_MS)
    tenant, _ = where
    start, end = EDGE - HOUR_MS, EDGE + 2 * HOUR_MS
    with tempfile.TemporaryDirectory() as folder:
        db = build(Path(folder) / "e.db", samples, rollups)
        with Monitor(db) as typed:
            result = typed.get_aggregation(MT, start, end, tenant)
    ordered = sorted(s.value for s in selected(samples, start, end, tenant))
    if not ordered:
        assert result is None
        return
    assert result is not None and not result["exact"] and result["from_hourly"] >= 1
    assert result["count"] == len(ordered) and result["min"] == ordered[0] and result["max"] == ordered[-1]
    for name, q in QS:
        truth = nearest_rank(ordered, q)
        if abs(truth) <= MIN_MAGNITUDE:  # counted as zero (processor.folds.sketch)
            assert abs(result[name]) <= MIN_MAGNITUDE, (name, result[name], truth)
        else:
            assert abs(result[name] - truth) <= DEFAULT_RELATIVE_ACCURACY * abs(truth), (name, result[name], truth)
            assert math.copysign(1, result[name]) == math.copysign(1, truth)


def test_a_type_row_that_does_not_stand_for_the_windows_is_read_finer(db: DbAt) -> None:
    samples, rollups = scenario(4, odd=False)
    path = build(db("t.db"), samples, rollups)
    conn = open_for_writing(path)
    # day 0: a window moved from tenant_a's series to tenant_b's behind the tier's back (the
    # counts across tenants still agree, each tenant's do not)
    conn.execute(
        "UPDATE rollup_windows SET series_id = (SELECT id FROM series WHERE tenant_id = 'tenant_b' AND labels = '{}') "
        "WHERE series_id = (SELECT id FROM series WHERE tenant_id = 'tenant_a' AND labels = '{\"model\":\"small\"}') "
        "AND window_start = (SELECT MIN(r.window_start) FROM rollup_windows AS r JOIN series AS s ON s.id = r.series_id "
        "WHERE s.tenant_id = 'tenant_a' AND s.labels = '{\"model\":\"small\"}' AND r.window_start >= ? AND r.window_start "
        "NOT IN (SELECT window_start FROM rollup_windows WHERE series_id = (SELECT id FROM series "
        "WHERE tenant_id = 'tenant_b' AND labels = '{}')))", (D0 + 2 * HOUR_MS,))
    # hour 5 of day 1 (and so day 1): the type rows gone, as a PostgreSQL database upgraded from schema 8 has them
    conn.execute("DELETE FROM type_hours WHERE hour_start = ?", (D0 + DAY_MS + 5 * HOUR_MS,))
    conn.execute("DELETE FROM type_days WHERE day_start = ?", (D0 + DAY_MS,))
    conn.close()
    with Monitor(path) as typed, Monitor(path, types=False) as finer:
        for tenant, labels in TYPED_FILTERS:
            a = typed.get_aggregation(MT, D0, D0 + 2 * DAY_MS, tenant, labels)
            b = finer.get_aggregation(MT, D0, D0 + 2 * DAY_MS, tenant, labels)
            same(a, b if b is None else {**b, "from_hourly": 0})
            if tenant in ("tenant_a", "tenant_b"):  # day 0 refused for them: read as the per-series tiers read it
                assert a is not None and b is not None and a["from_daily"] == b["from_daily"]
                assert a["from_hourly"] <= b["from_hourly"]  # the hours the type rows still vouch for
            for interval in (DAY_MS, HOUR_MS):
                same_series(typed.get_time_series(MT, D0, D0 + 2 * DAY_MS, interval, labels, tenant),
                            finer.get_time_series(MT, D0, D0 + 2 * DAY_MS, interval, labels, tenant))
        everything = typed.get_aggregation(MT, D0, D0 + 2 * DAY_MS)
        assert everything is not None and everything["from_daily"] == 1  # day 0 across tenants: one row


@pytest.mark.parametrize("seed", range(2))
def test_retention_keeps_the_tier_equal_to_the_finer_rows(tmp_path: Path, seed: int) -> None:
    samples, rollups = scenario(seed, odd=seed == 1)
    db = build(tmp_path / "r.db", samples, rollups, batch=400)
    conn = open_for_writing(db)
    cleanup(conn, D0 + 2 * DAY_MS, Retention(executions_ms=10 * DAY_MS, samples_ms=10 * DAY_MS,
                                             rollups_ms=DAY_MS + 3 * HOUR_MS + 7))
    conn.close()
    assert type_rows(db) == recomputed(db, tmp_path)
    with Monitor(db) as typed, Monitor(db, types=False) as finer:
        for start, end in ((D0, D0 + DAYS * DAY_MS), (D0 + DAY_MS - 5, D0 + 2 * DAY_MS + 5)):
            compared(typed, finer, samples, start, end, (DAY_MS, HOUR_MS), oracle=False)


def test_sparse_series_read_their_gaps_raw_in_joined_stretches_and_count_each_sample_once(tmp_path: Path) -> None:
    """Series with a sample every few minutes: windows no series has are many short raw segments,
    read in stretches joined across the windows between them (``probed``), whose samples the
    query leaves out again (``edges_of``); every sample is counted once, by the oracle."""
    rng = random.Random(9)
    series = [(tenant, {"model": m}) for tenant in ("tenant_a", "tenant_b", None) for m in ("a", "b", "c")]
    samples = [Sample(f"x{i:05d}", D0 + rng.randrange(3 * HOUR_MS), float(rng.randrange(1, 999)), MT, *series[i % 9])
               for i in range(300)]
    db = build(tmp_path / "s.db", samples, _windows(samples, D0 + 3 * HOUR_MS))
    with Monitor(db) as typed, Monitor(db, types=False) as finer:
        for start, end in ((D0, D0 + 3 * HOUR_MS), (D0 + 7, D0 + 2 * HOUR_MS + 5), (D0 + HOUR_MS, D0 + 3 * HOUR_MS)):
            compared(typed, finer, samples, start, end, (HOUR_MS, 7 * W), TYPED_FILTERS)
        plan = typed._metric_plan(Filter.of(MT, None, None), D0 + 7, D0 + 3 * HOUR_MS, None, with_sketch=True)
        assert len(probed(plan.raw, plan.minute, 9)) < len(plan.raw) > 10  # the stretches were joined


def test_edges_of_segments_tell_a_time_inside_them() -> None:
    segments = [(0, 10), (10, 20), (25, 25), (30, 40)]
    edges = edges_of(segments)
    for t in range(-5, 45):
        assert bool(bisect_right(edges, t) & 1) == any(lo <= t < hi for lo, hi in segments), t
