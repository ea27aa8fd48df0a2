"""The per-metric-type window tier (schema 11): ``type_windows`` is always the merge of its window
rows however the sink's batches fall (open windows first, final later, and after retention); the
queries that read it give the results of the tiers without it and of the raw-sample oracle across
window, hour, day and bucket boundaries (hypothesis over ranges, tenants, labels, window sizes and
finality); a row that does not stand for its windows (not final, of mixed sizes, a series missing,
rows missing) is read finer; and a database that the sink of schema 10 wrote migrates to it."""

from __future__ import annotations

import gzip
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.folds.sketch_codec import decode
from processor.store.db import DAY_MS, HOUR_MS, SCHEMA_VERSION, open_for_writing
from processor.store.dbdiff import compare
from processor.store.queries import Monitor
from processor.store.retention import Retention, cleanup
from processor.store.schema_types import TYPE_WINDOWS_VERSION
from processor.store.sinkdb import SinkBatch, write_batch
from processor.store.type_windows import rebuild_type_windows
from tests.unit.test_daily import D0, DAYS, scenario
from tests.unit.test_hourly import build, rollup, same, same_series
from tests.unit.test_migration import answers, same_answers
from tests.unit.test_queries import MT, Sample, check_aggregation, check_series, selected
from tests.unit.test_type_tier import ALL_FILTERS, LABELS, TENANTS, table

W = 60_000
FIXTURE_V10 = Path(__file__).resolve().parents[1] / "data" / "schema_v10.db.gz"
UNALIGNED = ((D0 + 17 * W + 5, D0 + HOUR_MS + 17 * W + 5), (D0 + 3 * HOUR_MS + 7, D0 + 6 * HOUR_MS + 30 * W - 11),
             (D0 + DAY_MS - 25 * W - 1, D0 + DAY_MS + 35 * W + 1), (D0 + 31, D0 + 2 * DAY_MS + 7 * HOUR_MS + 29))
"""Ranges whose edges cut hours (and windows), across a day boundary too."""


def window_rows(path: Path) -> list[tuple[Any, ...]]:
    return table(path, "SELECT * FROM type_windows ORDER BY 1, 2")


def recomputed(path: Path, tmp: Path) -> list[tuple[Any, ...]]:
    """The type window rows rebuilt from scratch on a copy of the database."""
    copy = tmp / "copy.db"
    shutil.copy(path, copy)
    conn = open_for_writing(copy)
    conn.execute("BEGIN")
    rebuild_type_windows(conn)
    conn.execute("COMMIT")
    conn.close()
    return window_rows(copy)


def published(rollups: Sequence[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """The rollups as a live worker publishes them: a final window first open (a stale snapshot,
    once or twice), then final, interleaved with other windows."""
    out: list[tuple[int, int, dict[str, Any]]] = []
    for r in rollups:
        late = r["window_start"] + rng.randrange(3) * W  # every version of a window equally late: in order
        if r["final"]:
            out += [(late, len(out) + k, {**r, "final": False, "count": 1}) for k in range(rng.randrange(1, 3))]
        out.append((late, len(out) + 2, r))
    return [r for _, _, r in sorted(out, key=lambda item: item[:2])]


def test_type_window_rows_are_the_merge_of_their_windows_however_batches_fall(tmp_path: Path) -> None:
    samples, rollups = scenario(3, odd=True)
    first = build(tmp_path / "a.db", samples, rollups, batch=53)
    second = build(tmp_path / "b.db", samples, rollups, batch=1_000)
    live = build(tmp_path / "c.db", samples, published(rollups, random.Random(3)), batch=37)
    rows = window_rows(first)
    assert rows and rows == window_rows(second) == window_rows(live) == recomputed(first, tmp_path)
    assert {r[0] for r in rows} == {MT}
    assert any(r[2] != r[3] for r in rows) and any(r[4] is None for r in rows)  # open windows; mixed sizes
    assert compare(first, live) == []
    conn = open_for_writing(first)
    cleanup(conn, D0 + 2 * DAY_MS, Retention(executions_ms=10 * DAY_MS, samples_ms=10 * DAY_MS,
                                             rollups_ms=DAY_MS + 7 * HOUR_MS))
    conn.close()
    after = window_rows(first)
    assert after != rows and after == recomputed(first, tmp_path)


def compared(path: Path, samples: Sequence[Sample], start: int, end: int, intervals: Sequence[int],
             filters: Sequence[tuple[str | None, dict[str, str] | None]] = ALL_FILTERS, *, oracle: bool = True) -> int:
    """Every query of ``filters`` over ``[start, end)``: with the window tier equal to without it
    (and to the oracle). Returns how many fewer rollup rows the aggregations read with it."""
    saved = 0
    with Monitor(path) as typed, Monitor(path, windows=False) as finer:
        for tenant, labels in filters:
            a = typed.get_aggregation(MT, start, end, tenant, labels)
            b = finer.get_aggregation(MT, start, end, tenant, labels)
            same(a, b if b is None else {**b, "from_hourly": 0})
            if a is not None and b is not None:
                assert a["from_hourly"] == b["from_hourly"] and a["from_daily"] == b["from_daily"]
                saved += b["from_rollups"] - a["from_rollups"]
            expected = selected(samples, start, end, tenant, labels)
            if oracle:
                check_aggregation(a, expected)
            for interval in intervals:
                points = typed.get_time_series(MT, start, end, interval, labels, tenant)
                same_series(points, finer.get_time_series(MT, start, end, interval, labels, tenant))
                if oracle:
                    check_series(points, expected, start, interval)
    return saved


def test_unaligned_ranges_read_one_row_per_window_and_give_the_finer_tiers_and_the_oracle(tmp_path: Path) -> None:
    samples, rollups = scenario(5, odd=True)
    db = build(tmp_path / "t.db", samples, rollups, batch=131)
    saved = 0
    for start, end in (*UNALIGNED, (D0, D0 + DAYS * DAY_MS), (D0 - W, D0 + 2 * DAY_MS + 1)):
        saved += compared(db, samples, start, end, (DAY_MS, HOUR_MS, 7 * W, 25 * W + 3))
    assert saved > 0
    with Monitor(db) as typed, Monitor(db, windows=False) as finer:
        a = typed.get_aggregation(MT, *UNALIGNED[0])
        b = finer.get_aggregation(MT, *UNALIGNED[0])
        assert a is not None and b is not None and a["from_rollups"] < b["from_rollups"] and a["from_rollups"] <= 61


def test_a_type_window_row_that_does_not_stand_for_its_windows_is_read_finer(tmp_path: Path) -> None:
    """Each row tampered with in an hour of its own (its count made wrong too, so that reading it
    shows): the hour, or the row, is read per series, as without the tier."""
    samples, rollups = scenario(4, odd=False)
    db = build(tmp_path / "t.db", samples, rollups)
    stored = {int(r[1]) for r in window_rows(db)}
    at = [min(w for w in stored if w >= D0 + k * HOUR_MS + 30 * W and w + W in stored) for k in range(7)]
    wrong = "count = count + 1000"
    conn = open_for_writing(db)
    # a row that claims more windows than its hour holds: the hour does not add up
    conn.execute(f"UPDATE type_windows SET windows = windows + 1, final_windows = final_windows + 1, {wrong} "
                 "WHERE metric_type = ? AND window_start = ?", (MT, at[0]))
    # a row not final (its hour adds up): the row is not read
    conn.execute(f"UPDATE type_windows SET final_windows = final_windows - 1, {wrong} "
                 "WHERE metric_type = ? AND window_start = ?", (MT, at[1]))
    # a row of mixed sizes (no window_ms)
    conn.execute(f"UPDATE type_windows SET window_ms = NULL, {wrong} WHERE metric_type = ? AND window_start = ?",
                 (MT, at[2]))
    # a row claiming a size that overlaps the next row (not final, so the plan does not read it from rollups)
    conn.execute(f"UPDATE type_windows SET window_ms = ?, {wrong} WHERE metric_type = ? AND window_start = ?",
                 (2 * W, MT, at[3]))
    conn.execute("UPDATE type_windows SET final_windows = final_windows - 1 WHERE metric_type = ? AND window_start = ?",
                 (MT, at[3] + W))
    # a row gone (as on a PostgreSQL database upgraded from schema 10)
    conn.execute("DELETE FROM type_windows WHERE metric_type = ? AND window_start = ?", (MT, at[4]))
    # a window written behind the tiers' back (a series missing from the rows of its hour)
    conn.execute("BEGIN")
    conn.execute("INSERT INTO rollup_windows(series_id, window_start, window_end, count, sum, min, max, sketch, final) "
                 "SELECT series_id, window_start + 30000, window_end + 30000, count + 1000, sum, min, max, sketch, final "
                 "FROM rollup_windows WHERE window_start = ? LIMIT 1", (at[5],))
    conn.execute("COMMIT")
    conn.close()
    with Monitor(db) as typed, Monitor(db, windows=False) as finer:
        for lo, hi, intervals in ((D0 + 5, D0 + 7 * HOUR_MS + 5, (7 * W, 25 * W + 3)),
                                  *((a - 20 * W - 3, a + 40 * W - 3, (7 * W,)) for a in at)):
            for tenant, labels in ALL_FILTERS:
                x = typed.get_aggregation(MT, lo, hi, tenant, labels)
                y = finer.get_aggregation(MT, lo, hi, tenant, labels)
                same(x, y if y is None else {**y, "from_hourly": 0})
                for interval in intervals:
                    same_series(typed.get_time_series(MT, lo, hi, interval, labels, tenant),
                                finer.get_time_series(MT, lo, hi, interval, labels, tenant))
        untouched = typed.get_aggregation(MT, at[6] - 20 * W - 3, at[6] + 40 * W - 3)
        assert untouched is not None and untouched["from_rollups"] <= 61  # the hour nobody touched: one row a window


EDGE = D0 + DAY_MS
values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
generated = st.lists(
    st.tuples(st.integers(-HOUR_MS, 2 * HOUR_MS - 1), values, st.sampled_from(TENANTS), st.integers(0, len(LABELS) - 1)),
    min_size=1, max_size=150,
).map(lambda items: [Sample(f"g{i:04d}", EDGE + at, v, MT, tenant, LABELS[label])
                     for i, (at, v, tenant, label) in enumerate(items)])
ends = st.one_of(
    st.integers(-HOUR_MS - W, 2 * HOUR_MS + W),
    st.integers(-1, 2).map(lambda k: k * HOUR_MS),
    st.integers(-60, 120).map(lambda k: k * W),
).map(lambda at: EDGE + at)


def _windows(samples: Sequence[Sample], final_before: int, wide: frozenset[int], opened: frozenset[int]) -> list[dict[str, Any]]:
    """The rollups of ``samples``: 60 s windows, 120 s in the hours of ``wide`` for the series
    there (by label index), open from ``final_before`` and at the minutes of ``opened``."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for s in samples:
        hour = s.timestamp - s.timestamp % HOUR_MS
        size = 2 * W if (LABELS.index(dict(s.labels)), (hour - EDGE) // HOUR_MS) in wide else W
        key = (s.tenant_id, tuple(sorted(s.labels.items())), s.timestamp - s.timestamp % size, size)
        groups.setdefault(key, []).append(s.value)
    return [rollup(tenant, dict(labels), start, size, vs, start + size <= final_before and (start - EDGE) // W not in opened)
            for (tenant, labels, start, size), vs in sorted(groups.items(), key=lambda kv: (kv[0][2], repr(kv[0])))]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated, st.integers(-60, 121), ends, ends, st.integers(1, 50),
       st.frozensets(st.tuples(st.integers(0, 2), st.integers(-1, 1)), max_size=2),
       st.frozensets(st.integers(-60, 119), max_size=4), st.sampled_from((7 * W, HOUR_MS, 25 * W + 3)))
def test_any_range_tenant_and_window_mix_equals_the_oracle_and_the_tiers_without_it(
    samples: list[Sample], final_minutes: int, a: int, b: int, batch: int, wide: frozenset[tuple[int, int]],
    opened: frozenset[int], interval: int,
) -> None:
    start, end = min(a, b), max(a, b) + 1
    rollups = _windows(samples, EDGE + final_minutes * W, frozenset(wide), opened)
    with tempfile.TemporaryDirectory() as folder:
        db = build(Path(folder) / "g.db", samples, published(rollups, random.Random(batch)), batch=batch)
        compared(db, samples, start, end, (interval,))
        compared(db, samples, EDGE - HOUR_MS + 17, EDGE + 2 * HOUR_MS - 17, (HOUR_MS,), ALL_FILTERS[:4])


def test_a_schema_10_database_migrates_to_the_window_tier_the_new_sink_writes(tmp_path: Path) -> None:
    """The database the sink of schema 10 wrote (``tests/data/schema_v10.db.gz``) migrates to
    schema 11: its type window rows are what the new sink writes from the same rows (the whole
    database compares equal with one the new sink wrote), and the queries answer as before."""
    old = tmp_path / "v10.db"
    old.write_bytes(gzip.decompress(FIXTURE_V10.read_bytes()))
    assert table(old, "PRAGMA user_version")[0][0] == TYPE_WINDOWS_VERSION - 1
    before = answers(old)
    migrated = tmp_path / "v11.db"
    shutil.copy(old, migrated)
    open_for_writing(migrated).close()
    assert table(migrated, "PRAGMA user_version")[0][0] == SCHEMA_VERSION >= TYPE_WINDOWS_VERSION
    rows = window_rows(migrated)
    assert rows and rows == recomputed(migrated, tmp_path)
    assert [d.table for d in compare(old, migrated)] == ["type_windows"]
    same_answers(answers(migrated), before)
    fresh = tmp_path / "fresh.db"
    conn = open_for_writing(fresh)
    windows = table(old, "SELECT series, window_start, window_end, tenant_id, metric_type, labels, unit, count, sum, "
                         "min, max, sketch, final FROM metric_rollups ORDER BY window_start, series")
    for k in range(0, len(windows), 300):
        batch = SinkBatch()
        for r in windows[k:k + 300]:
            batch.add_rollup({
                "series": r[0], "window_start": r[1], "window_end": r[2], "tenant_id": r[3], "metric_type": r[4],
                "labels": orjson.loads(r[5]), "unit": r[6], "count": r[7], "sum": r[8], "min": r[9], "max": r[10],
                "sketch": decode(r[11]).to_json(), "final": bool(r[12])})
        write_batch(conn, batch, written_at_ms=0)
    conn.close()
    assert window_rows(fresh) == rows


def test_windows_of_other_sizes_that_overlap_a_known_window_past_a_bucket_edge_are_read_raw(tmp_path: Path) -> None:
    """Series A has 2 min windows, series B one 3 min window starting in the middle of one of
    A's: A's window across a bucket's edge is known (read raw), B's (which starts past the edge,
    inside A's window) overlaps both A's windows, so all three are read raw, as the window-by-window
    plan reads them; a plan that took A's next window from the tier would miss B's samples there."""
    hour = D0 + 3 * HOUR_MS
    c = hour + 20 * W  # A's window [c, c + 2W) crosses the bucket edge at c + 30 s
    a_series, b_series = ("tenant_a", {"model": "a"}), ("tenant_b", {"model": "b"})
    samples: list[Sample] = []
    rollups: list[dict[str, Any]] = []
    for k in range(0, 60, 2):
        values = [float(k + 1), float(k + 2)]
        samples += [Sample(f"a{k}-{j}", hour + k * W + j * 50_000, v, MT, *a_series) for j, v in enumerate(values)]
        rollups.append(rollup(*a_series, hour + k * W, 2 * W, values, True))
    b_values = [5.0, 7.0, 11.0]
    samples += [Sample(f"b{j}", c + W + j * W + 10_000, v, MT, *b_series) for j, v in enumerate(b_values)]
    rollups.append(rollup(*b_series, c + W, 3 * W, b_values, True))
    db = build(tmp_path / "k.db", samples, sorted(rollups, key=lambda r: r["window_start"]))
    start = c + 30_000 - 7 * W  # buckets of 7 min: an edge at c + 30 s
    for lo, hi in ((start, hour + HOUR_MS), (start, c + 30_000), (hour + 7, c + 5 * W + 1)):
        compared(db, samples, lo, hi, (7 * W, W, HOUR_MS))
