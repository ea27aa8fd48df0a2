"""The hourly rollup tier: the sink keeps ``metric_rollups_hourly`` as a pure function of the
window rows, and the queries that read it give the results of the window-only path (and of the
raw-sample oracle), whatever is final, missing, mixed, tampered with or filtered."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.folds.aggregate import Aggregate
from processor.folds.sketch_codec import decode, encode_json
from processor.folds.windows import series_id
from processor.store.db import HOUR_MS, open_for_writing
from processor.store.hourly import hourly_row, refresh_hourly
from processor.store.queries import Monitor
from processor.store.retention import Retention, cleanup
from processor.store.sinkdb import SinkBatch, write_batch, write_rollups
from processor.store.tier_reads import Filter as _Filter
from tests.pg import DbAt, connect
from tests.unit.test_queries import (
    MT,
    Sample,
    check_aggregation,
    check_series,
    insert_samples,
    selected,
)

H0 = 1_699_999_200_000
"""An hour boundary."""
assert H0 % HOUR_MS == 0
HOURS = 5
W = 60_000

SERIES: tuple[tuple[str | None, dict[str, str]], ...] = (
    (None, {"model": "large"}),
    ("tenant_a", {"model": "large", "region": "eu"}),
    ("tenant_a", {"model": "small"}),
    ("tenant_b", {"model": "large", "region": "eu"}),
    ("tenant_b", {}),
)
FILTERS: tuple[tuple[str | None, dict[str, str] | None], ...] = (
    (None, None), ("tenant_a", None), ("tenant_b", {"region": "eu"}), (None, {"model": "large"}),
    (None, {"model": "small"}), ("tenant_z", None), ("tenant_a", {"model": "large", "region": "eu"}),
)


# -- building databases ------------------------------------------------------------------------


def rollup(tenant: str | None, labels: Mapping[str, str], start: int, size: int, values: Sequence[float],
           final: bool, metric_type: str = MT) -> dict[str, Any]:
    """A rollup record as the worker publishes it; an open window's is a stale snapshot (its
    first sample only), so a query that trusted it would be wrong."""
    agg = Aggregate.of(values if final else values[:1])
    return {
        "series": series_id((tenant or "", metric_type, tuple(sorted(labels.items())))),
        "tenant_id": tenant, "metric_type": metric_type, "labels": dict(labels), "unit": "ms",
        "window_start": start, "window_end": start + size, **agg.summary(), "sketch": agg.sketch.to_json(),
        "final": final,
    }


def scenario(seed: int, *, odd_sizes: bool) -> tuple[list[Sample], list[dict[str, Any]]]:
    """Samples over ``HOURS`` hours and the rollups of their windows: 60 s windows, some not
    final (the last half hour, and two windows of hour 1), a few windows no series has a row
    for, one series with 120 s windows during hour 2; with ``odd_sizes`` also a series of 7 min
    windows (they cross hour edges) and one of 20 s windows in hour 3."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    sizes = {i: W for i in range(len(SERIES))}
    specs = list(SERIES)
    if odd_sizes:
        specs.append(("tenant_a", {"model": "odd"}))
        sizes[len(specs) - 1] = 7 * W
    for i, (tenant, labels) in enumerate(specs):
        span = 90 * W if sizes[i] == 7 * W else HOURS * HOUR_MS
        for n in range(rng.randrange(300, 900)):
            at = H0 + rng.randrange(span)
            samples.append(Sample(f"{i}-{n:05d}", at, round(rng.lognormvariate(5, 1), 3), MT, tenant, labels))
    final_before = H0 + HOURS * HOUR_MS - 30 * W
    # no series has a row for these windows (in hour 2 whole 120 s windows: samples of a window
    # that only some series lack a row for would be missed by the window path)
    dropped = {H0 + k * W for k in rng.sample([*range(120), *range(180, HOURS * 60)], 12)}
    dropped |= {H0 + 2 * HOUR_MS + k * 2 * W + d for k in rng.sample(range(30), 2) for d in (0, W)}
    open_here = {H0 + HOUR_MS + k * W for k in rng.sample(range(60), 2)}  # hour 1 is not final
    groups: dict[tuple[int, int, int], list[float]] = {}
    for s in samples:
        i = specs.index((s.tenant_id, dict(s.labels)))
        size = sizes[i]
        if i == 1 and H0 + 2 * HOUR_MS <= s.timestamp < H0 + 3 * HOUR_MS:
            size = 2 * W
        if odd_sizes and i == 2 and H0 + 3 * HOUR_MS <= s.timestamp < H0 + 4 * HOUR_MS:
            size = W // 3
        start = s.timestamp - s.timestamp % size
        groups.setdefault((i, start, size), []).append(s.value)
    rollups = []
    for (i, start, size), values in sorted(groups.items()):
        if size in (W, 2 * W) and start in dropped:
            continue
        final = start + size <= final_before and start not in open_here
        rollups.append(rollup(*specs[i], start, size, values, final))
    return samples, rollups


def build(path: Path, samples: Iterable[Sample], rollups: Sequence[dict[str, Any]], batch: int = 97) -> Path:
    """Raw samples inserted, rollups written through the sink (``write_batch``, in batches)."""
    conn = open_for_writing(path)
    conn.execute("BEGIN")
    insert_samples(conn, samples)
    conn.execute("COMMIT")
    for k in range(0, len(rollups), batch):
        b = SinkBatch()
        for r in rollups[k:k + batch]:
            b.add_rollup(r)
        write_batch(conn, b, written_at_ms=0)
    conn.close()
    return path


def hourly_rows(path: Path) -> list[tuple[Any, ...]]:
    conn = connect(path)
    try:
        return conn.execute("SELECT * FROM metric_rollups_hourly ORDER BY series, hour_start").fetchall()
    finally:
        conn.close()


# -- queries: with the tier equal without it, and equal the oracle ------------------------------


def ranges(rng: random.Random) -> list[tuple[int, int]]:
    span = HOURS * HOUR_MS
    out = [(H0, H0 + span), (H0 + 1, H0 + span - 1), (H0 + HOUR_MS, H0 + 3 * HOUR_MS), (H0 - W, H0 + span + W),
           (H0 + 59 * W, H0 + 2 * HOUR_MS + W)]
    for _ in range(6):
        a, b = sorted(rng.randrange(-HOUR_MS, span + HOUR_MS) for _ in range(2))
        out.append((H0 + a, H0 + b + 1))
    return out


INTERVALS = (HOUR_MS, 2 * HOUR_MS, 90 * W, 30 * W, 5 * HOUR_MS, 7_000)


def same(tiered: Mapping[str, Any] | None, plain: Mapping[str, Any] | None) -> None:
    """Equal, but for the sums' last bits and how many rollup rows were read."""
    if plain is None:
        assert tiered is None
        return
    assert tiered is not None
    loose = {"sum", "avg", "from_rollups", "from_hourly", "from_daily"}
    assert {k: v for k, v in tiered.items() if k not in loose} == {k: v for k, v in plain.items() if k not in loose}
    assert tiered["sum"] == pytest.approx(plain["sum"], rel=1e-12)
    assert plain["from_hourly"] == 0 and tiered["from_rollups"] <= plain["from_rollups"]


def same_series(tiered: Mapping[str, Any], plain: Mapping[str, Any]) -> None:
    assert [(p["timestamp"], p["count"]) for p in tiered["data_points"]] == [
        (p["timestamp"], p["count"]) for p in plain["data_points"]]
    for a, b in zip(tiered["data_points"], plain["data_points"]):
        assert a["value"] == pytest.approx(b["value"], rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_the_tier_gives_the_window_path_results_and_the_oracle(db: DbAt, seed: int) -> None:
    odd = seed % 2 == 1
    samples, rollups = scenario(seed, odd_sizes=odd)
    mixed = range(H0 + 2 * HOUR_MS, H0 + 3 * HOUR_MS)
    db = build(db("h.db"), samples, rollups)
    rng = random.Random(seed)
    used_hourly = 0
    with Monitor(db) as tiered, Monitor(db, hourly=False) as plain:
        for start, end in ranges(rng):
            for tenant, labels in FILTERS:
                a = tiered.get_aggregation(MT, start, end, tenant, labels)
                same(a, plain.get_aggregation(MT, start, end, tenant, labels))
                used_hourly += a["from_hourly"] if a else 0
                expected = selected(samples, start, end, tenant, labels)
                # where windows of different sizes meet, one that starts before the range is
                # never read, and its samples in the range are missed: by both paths alike
                oracle = not odd and start not in mixed
                if oracle:
                    check_aggregation(a, expected)
                for interval in (rng.choice(INTERVALS), HOUR_MS):
                    series = tiered.get_time_series(MT, start, end, interval, labels, tenant)
                    same_series(series, plain.get_time_series(MT, start, end, interval, labels, tenant))
                    if oracle:
                        check_series(series, expected, start, interval)
    assert used_hourly > 0


def test_hourly_rows_must_each_match_their_series_windows(db: DbAt) -> None:
    """A window row moved from one series to another behind the tier's back: the counts per
    hour still agree, the counts per series do not, so the hour is read window by window."""
    samples, rollups = scenario(8, odd_sizes=False)
    db = build(db("h.db"), samples, rollups)
    (a, _), (b, _, _) = [
        (r["series"], r["window_start"]) for r in rollups if r["tenant_id"] == "tenant_a"
        and r["labels"] == {"model": "small"} and H0 + 3 * HOUR_MS <= r["window_start"] < H0 + 4 * HOUR_MS][:1] + [
        (r["series"], r["tenant_id"], orjson.dumps(r["labels"], option=orjson.OPT_SORT_KEYS).decode())
        for r in rollups if r["tenant_id"] == "tenant_b"][:1]
    conn = open_for_writing(db)
    start = conn.execute("SELECT MIN(window_start) FROM metric_rollups WHERE series = ? AND window_start >= ? "
                         "AND window_start NOT IN (SELECT window_start FROM metric_rollups WHERE series = ?)",
                         (a, H0 + 3 * HOUR_MS, b)).fetchone()[0]
    assert H0 + 3 * HOUR_MS <= start < H0 + 4 * HOUR_MS
    conn.execute("UPDATE rollup_windows SET series_id = (SELECT id FROM series WHERE key = ?) "
                 "WHERE series_id = (SELECT id FROM series WHERE key = ?) AND window_start = ?", (b, a, start))
    conn.close()
    with Monitor(db) as tiered, Monitor(db, hourly=False) as plain:
        for tenant, labels in (*FILTERS, ("tenant_b", {})):
            for lo, hi in ((H0 + 3 * HOUR_MS, H0 + 4 * HOUR_MS), (H0, H0 + HOURS * HOUR_MS)):
                same(tiered.get_aggregation(MT, lo, hi, tenant, labels), plain.get_aggregation(MT, lo, hi, tenant, labels))
                same_series(tiered.get_time_series(MT, lo, hi, HOUR_MS, labels, tenant),
                            plain.get_time_series(MT, lo, hi, HOUR_MS, labels, tenant))


def test_whole_final_hours_come_from_hourly_rows(db: DbAt) -> None:
    samples, rollups = scenario(11, odd_sizes=False)
    db = build(db("h.db"), samples, rollups)
    with Monitor(db, types=False) as monitor:  # the per-series tier (the per-type one: test_type_tier.py)
        # hours 0, 3: every series final, uniform; 1: not final; 2: 60 s and 120 s windows; 4: open
        result = monitor.get_aggregation(MT, H0, H0 + HOURS * HOUR_MS)
        assert result is not None and result["from_hourly"] == len(SERIES) * 2
        only_small = monitor.get_aggregation(MT, H0, H0 + HOURS * HOUR_MS, labels={"model": "small"})
        assert only_small is not None and only_small["from_hourly"] >= 3  # hour 2 is uniform for this series
        daily = monitor.get_time_series(MT, H0, H0 + HOURS * HOUR_MS, HOURS * HOUR_MS)
        plan = monitor._metric_plan(_Filter.of(MT, None, None), H0, H0 + HOURS * HOUR_MS, HOURS * HOUR_MS,
                                    with_sketch=False)
        assert len(plan.hourly) == result["from_hourly"]
        assert not monitor._metric_plan(_Filter.of(MT, None, None), H0, H0 + HOURS * HOUR_MS, 30 * W,
                                        with_sketch=False).hourly
    check_aggregation(result, selected(samples, H0, H0 + HOURS * HOUR_MS))
    check_series(daily, selected(samples, H0, H0 + HOURS * HOUR_MS), H0, HOURS * HOUR_MS)


def test_hours_whose_hourly_rows_do_not_match_the_windows_are_read_window_by_window(db: DbAt) -> None:
    samples, rollups = scenario(5, odd_sizes=False)
    db = build(db("h.db"), samples, rollups)
    conn = open_for_writing(db)
    # hour 0 as a database migrated from version 2 has it: windows, no hourly rows
    conn.execute("DELETE FROM rollup_hours WHERE hour_start = ?", (H0,))
    # hour 1: one series' hourly row gone (the others stay)
    conn.execute("DELETE FROM rollup_hours WHERE hour_start = ? AND series_id IN "
                 "(SELECT id FROM series WHERE tenant_id = 'tenant_b')", (H0 + HOUR_MS,))
    # hour 3: a window of every series deleted behind the tier's back (the hourly rows claim it)
    conn.execute("DELETE FROM rollup_windows WHERE window_start = (SELECT MIN(window_start) FROM rollup_windows "
                 "WHERE window_start >= ?)", (H0 + 3 * HOUR_MS,))
    conn.close()
    start, end = H0, H0 + HOURS * HOUR_MS
    with Monitor(db, types=False) as tiered, Monitor(db, hourly=False) as plain:
        for tenant, labels in FILTERS:
            a = tiered.get_aggregation(MT, start, end, tenant, labels)
            same(a, plain.get_aggregation(MT, start, end, tenant, labels))
            check_aggregation(a, selected(samples, start, end, tenant, labels))
            same_series(tiered.get_time_series(MT, start, end, HOUR_MS, labels, tenant),
                        plain.get_time_series(MT, start, end, HOUR_MS, labels, tenant))
        everything = tiered.get_aggregation(MT, start, end)
    assert everything is not None and everything["from_hourly"] == 0  # hour 2 mixed, 4 open, 0, 1, 3 refused


def test_an_hour_that_a_longer_window_reaches_into_is_read_window_by_window(db: DbAt) -> None:
    rng = random.Random(3)
    a = [Sample(f"a{k}", H0 + k * W + rng.randrange(W), float(rng.randrange(1, 500)), labels={"w": "1"})
         for k in range(3 * 60)]
    b_start = H0 + HOUR_MS - 3 * W  # a 7 min window from hour 0 into hour 1
    b = [Sample(f"b{k}", b_start + rng.randrange(7 * W), float(rng.randrange(1, 500)), labels={"w": "7"}) for k in range(9)]
    rollups = [rollup(None, {"w": "1"}, s.timestamp - s.timestamp % W, W, [s.value], True) for s in a]
    rollups.append(rollup(None, {"w": "7"}, b_start, 7 * W, [s.value for s in b], True))
    db = build(db("h.db"), a + b, rollups)
    with Monitor(db) as tiered, Monitor(db, hourly=False) as plain:
        result = tiered.get_aggregation(MT, H0, H0 + 3 * HOUR_MS)
        same(result, plain.get_aggregation(MT, H0, H0 + 3 * HOUR_MS))
        check_aggregation(result, a + b)
        assert result is not None and result["from_hourly"] == 1  # hour 2; hour 1 is spoiled, hour 0 unaccounted
        same_series(tiered.get_time_series(MT, H0, H0 + 3 * HOUR_MS, HOUR_MS),
                    plain.get_time_series(MT, H0, H0 + 3 * HOUR_MS, HOUR_MS))
        only_a = tiered.get_aggregation(MT, H0, H0 + 3 * HOUR_MS, labels={"w": "1"})
        assert only_a is not None and only_a["from_hourly"] == 2  # hour 1 too: the long window is not selected
        check_aggregation(only_a, a)


def test_a_database_without_the_table_is_read_from_windows(db: DbAt) -> None:
    samples, rollups = scenario(3, odd_sizes=False)
    db = build(db("h.db"), samples, rollups)
    conn = open_for_writing(db)
    expected = Monitor(db, hourly=False).get_aggregation(MT, H0, H0 + 4 * HOUR_MS)
    conn.execute("DROP VIEW metric_rollups_hourly")
    conn.close()
    with Monitor(db) as monitor:
        same(monitor.get_aggregation(MT, H0, H0 + 4 * HOUR_MS), expected)


# -- the sink: a pure function of the window rows ------------------------------------------------


def test_the_hourly_rows_do_not_depend_on_batching_order_or_rewrites(db: DbAt) -> None:
    _, rollups = scenario(7, odd_sizes=True)
    first = build(db("one.db"), [], rollups, batch=len(rollups))
    # the open snapshots first, shuffled, in small batches, then everything again as it ends up
    rng = random.Random(1)
    early = [dict(r, final=False) for r in rollups]
    rng.shuffle(early)
    second = build(db("two.db"), [], [*early, *rollups], batch=13)
    assert hourly_rows(first) == hourly_rows(second)
    assert len(hourly_rows(first)) > 0
    conn = open_for_writing(second)
    before = hourly_rows(second)
    conn.execute("BEGIN")
    write_rollups(conn, rollups[:50])  # the same rows again
    conn.execute("COMMIT")
    conn.close()
    assert hourly_rows(second) == before


def test_an_hourly_row_is_the_merge_of_its_windows(db: DbAt) -> None:
    _, rollups = scenario(2, odd_sizes=True)
    db = build(db("h.db"), [], rollups)
    conn = connect(db)
    windows = conn.execute("SELECT series, window_start, window_end, count, sum, min, max, sketch, final "
                           "FROM metric_rollups").fetchall()
    rows = conn.execute("SELECT series, hour_start, hour_end, windows, final_windows, window_ms, coverage, count, "
                        "sum, min, max, sketch FROM metric_rollups_hourly").fetchall()
    conn.close()
    for series, hour, hour_end, n, finals, window_ms, coverage, count, total, low, high, sketch in rows:
        inside = [w for w in windows if w[0] == series and hour <= w[1] and w[2] <= hour_end]
        assert hour_end == hour + HOUR_MS and n == len(inside) > 0
        inside = [w for w in inside if w[8]]  # the rest describes the final ones
        assert finals == len(inside)
        if not inside:
            assert (count, total, low, high, sketch, window_ms, coverage) == (0, 0.0, None, None, b"", None, "")
            continue
        assert count == sum(w[3] for w in inside) and total == pytest.approx(math.fsum(w[4] for w in inside))
        assert (low, high) == (min(w[5] for w in inside), max(w[6] for w in inside))
        merged = Aggregate()
        for w in inside:
            merged = merged.merge(Aggregate.from_json({"count": w[3], "sum": w[4], "min": w[5], "max": w[6],
                                                      "sketch": decode(w[7]).to_json()}))
        assert decode(sketch).to_json() == merged.sketch.to_json()
        sizes = {w[2] - w[1] for w in inside}
        if len(sizes) == 1 and HOUR_MS % next(iter(sizes)) == 0:
            size = next(iter(sizes))
            assert window_ms == size
            assert int(coverage, 16) == sum(1 << ((w[1] - hour) // size) for w in inside)
        else:
            assert window_ms is None and coverage == ""
    covered = {(w[0], w[1] - w[1] % HOUR_MS) for w in windows if w[1] // HOUR_MS == (w[2] - 1) // HOUR_MS}
    assert {(r[0], r[1]) for r in rows} == covered  # and no hour without a window inside it
    assert any(r[3] > r[4] for r in rows)  # some not final


def test_hourly_row_edge_cases() -> None:
    def window(start: int, end: int, alpha: float = 0.01, final: int = 1) -> tuple[Any, ...]:
        sketch = encode_json({"a": alpha, "z": 0, "p": [5, 1], "n": []})
        return (start, end, None, MT, "{}", "ms", 1, 2.0, 2.0, 2.0, sketch, final)

    assert hourly_row("s", H0, []) is None
    assert hourly_row("s", H0, [window(H0 + HOUR_MS - W, H0 + HOUR_MS + W)]) is None  # crosses the hour's end
    assert hourly_row("s", H0, [window(H0, H0 + W), window(H0 + W, H0 + 2 * W, alpha=0.02)]) is None
    row = hourly_row("s", H0, [window(H0, H0 + W), window(H0 + 2 * W, H0 + 3 * W)])
    assert row is not None and row[7:11] == (2, 2, W, "5") and row[11:15] == (2, 4.0, 2.0, 2.0)
    partly = hourly_row("s", H0, [window(H0, H0 + W, final=0), window(H0 + 2 * W, H0 + 3 * W)])
    assert partly is not None and partly[6:11] == ("ms", 2, 1, W, "4") and partly[11] == 1
    unfinished = hourly_row("s", H0, [window(H0, H0 + W, final=0)])
    assert unfinished is not None and unfinished[6:] == ("", 1, 0, None, "", 0, 0.0, None, None, b"")
    crossing = hourly_row("s", H0, [window(H0, H0 + W), window(H0 + 59 * W, H0 + 61 * W, final=0)])
    assert crossing is not None and crossing[7:11] == (1, 1, W, "1")  # only what lies inside counts
    odd = hourly_row("s", H0, [window(H0, H0 + 7 * W)])
    assert odd is not None and odd[9:11] == (None, "")
    tiny = hourly_row("s", H0, [window(H0, H0 + 500)])  # more windows than the mask describes
    assert tiny is not None and tiny[9:11] == (None, "")


def recomputed(path: Path) -> list[tuple[Any, ...]]:
    """The hourly rows computed from scratch from the window rows stored (the oracle)."""
    conn = connect(path)
    try:
        windows = conn.execute("SELECT series, window_start, window_end, tenant_id, metric_type, labels, unit, count, "
                               "sum, min, max, sketch, final FROM metric_rollups ORDER BY series, window_start").fetchall()
    finally:
        conn.close()
    hours: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for w in windows:
        hours.setdefault((w[0], w[1] - w[1] % HOUR_MS), []).append(w[1:])
    rows = [hourly_row(series, hour, found) for (series, hour), found in sorted(hours.items())]
    rows = [row for row in rows if row is not None]
    for row in rows:
        assert row[7:9] + row[11:15] == plain_hour(hours[(row[0], row[1])], row[1]), row
    return rows


def plain_hour(windows: list[tuple[Any, ...]], hour: int) -> tuple[Any, ...]:
    """An hour's window counts and its final windows' count, sum, min and max, the plain way
    (an oracle independent of :func:`hourly_row` for those columns)."""
    inside = [w for w in windows if hour <= w[0] and w[1] <= hour + HOUR_MS]
    finals = [w for w in inside if w[11]]
    lows = [w[8] for w in finals if w[8] is not None]
    highs = [w[9] for w in finals if w[9] is not None]
    total = 0.0
    for w in sorted(finals, key=lambda w: w[0]):
        total += w[7]
    return (len(inside), len(finals), sum(w[6] for w in finals), total, min(lows, default=None), max(highs, default=None))


@pytest.mark.parametrize("seed", range(8))
def test_the_table_is_always_what_the_windows_give(db: DbAt, seed: int) -> None:
    """Batches as the worker publishes them (each window open, updated, then final, in time
    order, cut at random points; or, as a replay or a sink catching up sees them, only the
    final ones; sometimes late, resent, changed, resized or with another accuracy): after every
    batch the table is the from-scratch merge of the windows."""
    rng = random.Random(seed)
    _, finals = scenario(seed, odd_sizes=seed % 2 == 1)
    opens = 3 if seed < 4 else 1  # seeds 4..7: final windows only, the sink's fast path
    events: list[tuple[int, dict[str, Any]]] = []
    for r in finals:
        for k in range(rng.randrange(0, opens)):
            events.append((r["window_start"] + (k + 1) * 10_000, dict(r, final=False, count=k + 1)))
        if r["final"]:
            events.append((r["window_end"] + rng.randrange(0, 3 * W), r))
    for _ in range(40):  # something unusual here and there
        when, r = rng.choice(events)
        twist = rng.randrange(4)
        if twist == 0:
            r = dict(r, sum=r["sum"] + 1.0, min=(r["min"] or 0) + 5.0)  # a later version that is not a superset
        elif twist == 1:
            r = dict(r, window_end=r["window_start"] + 2 * W)  # resized
        elif twist == 2:
            r = dict(r, sketch={**r["sketch"], "a": 0.02})  # another accuracy
        events.append((when + rng.randrange(-5 * W, 5 * W), r))
    events.sort(key=lambda e: e[0])
    db = db("t.db")
    conn = open_for_writing(db)
    at = 0
    while at < len(events):
        size = rng.choice((1, 7, 50, 400))
        batch = SinkBatch()
        for _, r in events[at:at + size]:
            batch.add_rollup(r)
        write_batch(conn, batch, written_at_ms=0)
        at += size
        if rng.random() < 0.3 or at >= len(events):
            assert hourly_rows(db) == recomputed(db)
    conn.close()
    assert len(hourly_rows(db)) > 0


def test_adding_windows_to_a_complete_hour_gives_what_recomputing_gives(db: DbAt) -> None:
    def final(start: int, value: float, size: int = W, **changes: Any) -> dict[str, Any]:
        return {**rollup("tenant_a", {"m": "x"}, start, size, [value, value / 3], True), **changes}

    db = db("a.db")
    conn = open_for_writing(db)
    steps: list[list[dict[str, Any]]] = [
        [final(H0 + 5 * W, 1.1), final(H0 + 9 * W, 2.2)],  # a new hour
        [final(H0 + 10 * W, 3.3), final(H0 + 12 * W, 4.4)],  # appended after the newest
        [final(H0 + 7 * W, 5.5)],  # new, but before the newest
        [final(H0 + 12 * W, 6.6)],  # the newest, changed
        [final(H0 + 13 * W, 7.7, sum=1e17)],  # appended: the sum's order matters
        [final(H0 + 14 * W, 0.1), final(H0 + 16 * W, 0.2, size=2 * W)],  # another size
        [final(H0 + 20 * W, 0.3, window_end=H0 + 21 * W)],
        [final(H0 + 30 * W, 0.4, sketch={"a": 0.02, "z": 0, "p": [1, 1], "n": []})],  # another accuracy
        [final(H0 + 40 * W, 0.5), final(H0 + 41 * W, 0.6, final=False)],  # an open window
        [final(H0 + 41 * W, 0.6)],
        [final(H0 + 2 * HOUR_MS + 5 * W, 0.1, final=False)],  # hour 2: open windows first
        [final(H0 + 2 * HOUR_MS + 6 * W, 0.2, final=False), final(H0 + 2 * HOUR_MS + 5 * W, 0.3, final=False)],
        [final(H0 + 2 * HOUR_MS + 5 * W, 0.3)],  # made final before an open one
        [final(H0 + 2 * HOUR_MS + 6 * W, 0.4, final=False), final(H0 + 2 * HOUR_MS + 7 * W, 0.5, final=False)],
        [final(H0 + 2 * HOUR_MS + 7 * W, 0.5)],  # made final after an open one
        [final(H0 + 2 * HOUR_MS + 6 * W, 0.4)],  # before the newest final: recomputed
        [final(H0 + 2 * HOUR_MS + 6 * W, 0.4, final=False)],  # final again not
        [final(H0 + 2 * HOUR_MS + 59 * W, 0.6, size=2 * W, final=False)],  # open, across the hour's end
        [final(H0 + 2 * HOUR_MS + 58 * W, 0.7, final=False)],
        [final(H0 + 2 * HOUR_MS + 58 * W, 0.7, size=3 * W, final=False)],  # open, resized across the end
        [final(H0 + 2 * HOUR_MS + 58 * W, 0.7, size=W, final=False)],  # and back
        [final(H0 + 42 * W, 0.7), final(H0 + 42 * W, 0.8)],  # the same window twice: the last wins
        [final(H0 + HOUR_MS + 3 * W, 1.5)],  # hour 1: one size throughout
        [final(H0 + HOUR_MS + 4 * W, 1.6), final(H0 + HOUR_MS + 8 * W, 1.7)],
        [final(H0 + HOUR_MS + 9 * W, 1.8), final(H0 + HOUR_MS + 9 * W, 1.9)],
    ]
    for rollups in steps:
        batch = SinkBatch()
        for r in rollups:
            batch.add_rollup(r)
        write_batch(conn, batch, written_at_ms=0)
        assert hourly_rows(db) == recomputed(db), rollups
    conn.execute("BEGIN")
    write_rollups(conn, [final(H0 + HOUR_MS + 50 * W, 0.9), final(H0 + HOUR_MS + 50 * W, 1.0)])  # not coalesced
    conn.execute("COMMIT")
    assert hourly_rows(db) == recomputed(db)
    conn.close()


def test_cleanup_keeps_hourly_rows_equal_to_what_is_left(db_at: DbAt) -> None:
    _, rollups = scenario(4, odd_sizes=True)
    db = build(db_at("h.db"), [], rollups)
    cut = H0 + 2 * HOUR_MS + 17 * W  # inside hour 2: part of it goes
    now = cut + Retention().rollups_ms
    conn = open_for_writing(db)
    report = cleanup(conn, now)
    conn.close()
    assert report.rollups > 0
    kept = [r for r in rollups if r["window_end"] >= cut]
    assert hourly_rows(db) == hourly_rows(build(db_at("kept.db"), [], kept))
    conn = open_for_writing(db)
    conn.execute("BEGIN")
    refresh_hourly(conn, {(r["series"], r["window_start"] - r["window_start"] % HOUR_MS) for r in rollups})
    conn.execute("COMMIT")
    conn.close()
    assert hourly_rows(db) == hourly_rows(db_at("kept.db"))
