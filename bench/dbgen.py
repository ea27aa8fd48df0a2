"""Data for the database benchmarks (:mod:`bench.sink`, :mod:`bench.queries`, :mod:`bench.replay`).

Three kinds of data, from the cheapest per row to the most realistic:

- :func:`build_query_db`: a synthetic database of millions of executions (with their steps),
  raw samples, final 60 s rollups and their hourly tier, bulk-inserted straight into the schema of
  :mod:`processor.store.db` (``executemany`` in big transactions, ``synchronous=OFF``,
  ``journal_mode=OFF`` while loading, the secondary indexes dropped during the load and created
  again from their own SQL afterwards). Rows look like the sink's: the same id format (UUIDv7),
  column encodings (:func:`processor.store.sinkdb.execution_row`, sorted-key label JSON, the sketch
  bytes of :func:`processor.folds.sketch_codec.encode`) and per-tenant ``workflow_stats``
  counters that agree with the execution rows. :func:`cached_query_db` keeps it between runs.
- :func:`simulate`: a :func:`producers.simulator.generate_scenario` folded with
  :func:`processor.folds.execution.apply` into execution snapshots (final, or one after every event as
  the worker publishes them), the samples it recorded and the samples the worker derives
  (:func:`processor.folds.derived.derived_samples`).
- :func:`replicate`: copies of a simulated template, shifted in time with fresh ids, to reach a
  size without simulating every execution.

Also here: :func:`rollups_of` (final rollup records of a set of samples), :func:`table_bytes`
(database size by table, from ``dbstat``) and :class:`SelfProfile` (py-spy on this process).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import orjson

from bench.profiling import py_spy
from processor.folds.aggregate import Aggregate
from processor.folds.derived import derived_samples
from processor.folds.execution import ExecutionState, apply, snapshot
from processor.folds.sketch import DEFAULT_RELATIVE_ACCURACY, MIN_MAGNITUDE, QuantileSketch
from processor.folds.sketch_codec import encode
from processor.folds.windows import MetricWindow, series_id, series_of, window_start
from processor.settings import default_cache_home
from processor.store.daily import rebuild_daily
from processor.store.db import SCHEMA_VERSION, open_for_writing
from processor.store.executions import write_execution_rows
from processor.store.hourly import hour_of, hourly_row
from processor.store.series import write_keyed_samples, write_tier_rows, write_window_rows
from processor.store.type_tier import rebuild_types
from processor.store.type_windows import rebuild_type_windows
from producers.simulator import MODELS, WORKFLOWS, ScenarioConfig, generate_scenario
from schemas.events import Event, LifecycleEvent, MetricRecorded
from schemas.ids import uuid7

DBGEN_VERSION = 5
"""Bumped whenever :func:`build_query_db` writes different data: part of the cache key.
2: the hourly tier (``metric_rollups_hourly``); 3: the day tier and the kept counts; 4: through the
store's writers of the compact layout (schema 8); 5: executions through the store's writer (schema 9)."""
ENV_BENCH_CACHE = "AXMON_BENCH_CACHE"
"""Where generated databases are cached (default ``~/.cache/axmon/bench``)."""
WINDOW_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


# -- the synthetic query database -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryDbSpec:
    """What :func:`build_query_db` generates. Every field is part of the cache key."""

    executions: int = 1_000_000
    samples: int = 10_000_000
    tenants: int = 10
    span_days: int = 30
    """Executions start, and samples occur, uniformly within this span before ``end_ms``."""
    seed: int = 42
    end_ms: int = 1_767_225_600_000
    """The dataset's "now" (2026-01-01T00:00:00Z): the newest event is just before it."""
    running_recent_ms: int = 300_000
    """Executions started within this long before ``end_ms`` are still running."""
    stale_running_rate: float = 0.0005
    """Older executions left running forever (an engine that died without ending them)."""

    @property
    def key(self) -> str:
        return (f"querydb-s{SCHEMA_VERSION}-g{DBGEN_VERSION}-e{self.executions}-m{self.samples}-t{self.tenants}"
                f"-d{self.span_days}-r{self.seed}-n{self.end_ms}")

    @property
    def start_ms(self) -> int:
        return self.end_ms - self.span_days * DAY_MS


@dataclass(frozen=True, slots=True)
class GenerationStats:
    """How long :func:`build_query_db` took, and what it wrote."""

    executions: int
    steps: int
    samples: int
    rollups: int
    hourly: int
    """``metric_rollups_hourly`` rows."""
    daily: int
    """``metric_rollups_daily`` rows."""
    tenants: int
    series: int
    executions_s: float
    samples_s: float
    """Raw samples and their rollups (generated together, one time slice at a time), the
    hourly rows included."""
    hourly_s: float
    """Of ``samples_s``: merging the windows into hourly rows."""
    daily_s: float
    """Merging the hourly rows into daily rows and counting windows and samples (as the
    migration to schema 6 does: :func:`processor.store.daily.rebuild_daily`)."""
    indexes_s: float
    total_s: float
    file_bytes: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerationStats:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True, slots=True)
class _Series:
    tenant: str | None
    metric_type: str
    unit: str
    labels: tuple[tuple[str, str], ...]
    weight: float
    kind: str
    """How values are drawn: ``latency``, ``percent``, ``queue``, ``duration``, ``count``."""

    @property
    def series_json(self) -> str:
        return series_id((self.tenant or "", self.metric_type, self.labels))

    @property
    def labels_json(self) -> str:
        return orjson.dumps(dict(self.labels), option=orjson.OPT_SORT_KEYS).decode()


SAMPLE_MIX: tuple[tuple[str, float], ...] = (
    ("api.request.duration", 0.38),
    ("cpu.usage", 0.07),
    ("workflow.queue.length", 0.07),
    ("worker.pool.utilization", 0.02),
    ("workflow.execution.duration", 0.04),
    ("workflow.execution.count", 0.04),
    ("workflow.step.duration", 0.19),
    ("workflow.step.count", 0.19),
)
"""Share of the raw samples per metric type: what the simulator records per execution
(two ``api.request.duration`` per step attempt, system gauges every 15 s) plus what the worker
derives from lifecycle events (a count and a duration per execution end and per step attempt)."""

_EXECUTION_OUTCOMES = (("completed", 0.88), ("failed", 0.09), ("cancelled", 0.03))
_STEP_OUTCOMES = (("completed", 0.92), ("failed", 0.08))


def tenant_names(n: int) -> list[str]:
    """The simulator's tenant names: ``tenant_a`` ... ``tenant_z``, then ``tenant_26`` ..."""
    return [f"tenant_{chr(ord('a') + i)}" if i < 26 else f"tenant_{i}" for i in range(n)]


def series_catalogue(tenants: int) -> list[_Series]:
    """Every series of the synthetic database, with the share of samples each gets."""
    names = tenant_names(tenants)
    shares = dict(SAMPLE_MIX)
    out: list[_Series] = []
    for tenant in names:
        per = 1 / len(names)
        for model in MODELS:
            out.append(_Series(tenant, "api.request.duration", "ms", (("endpoint", "chat"), ("model", model)),
                               shares["api.request.duration"] * per / len(MODELS), "latency"))
        out.append(_Series(tenant, "cpu.usage", "percent", (("host", "worker-1"),), shares["cpu.usage"] * per, "percent"))
        out.append(_Series(tenant, "workflow.queue.length", "count", (), shares["workflow.queue.length"] * per, "queue"))
        for _, workflow, steps in WORKFLOWS:
            for status, p in _EXECUTION_OUTCOMES:
                labels: tuple[tuple[str, str], ...] = (("status", status), ("workflow", workflow))
                w = per / len(WORKFLOWS) * p
                out.append(_Series(tenant, "workflow.execution.duration", "ms", labels,
                                   shares["workflow.execution.duration"] * w, "duration"))
                out.append(_Series(tenant, "workflow.execution.count", "count", labels,
                                   shares["workflow.execution.count"] * w, "count"))
            step_count = sum(len(s) for _, _, s in WORKFLOWS)
            for step_key, _ in steps:
                for status, p in _STEP_OUTCOMES:
                    labels = (("status", status), ("step", step_key), ("workflow", workflow))
                    w = per / step_count * p
                    out.append(_Series(tenant, "workflow.step.duration", "ms", labels,
                                       shares["workflow.step.duration"] * w, "duration"))
                    out.append(_Series(tenant, "workflow.step.count", "count", labels,
                                       shares["workflow.step.count"] * w, "count"))
    out.append(_Series(None, "worker.pool.utilization", "percent", (("pool", "default"),),
                       shares["worker.pool.utilization"], "percent"))
    return out


def fast_uuid7(ms: int, rng: random.Random) -> str:
    """A UUIDv7 string for ``ms`` with random low bits (the format of :func:`schemas.ids.uuid7`,
    without its process-wide lock and counter; ids stay in time order across milliseconds)."""
    h = f"{(ms << 80) | 0x7000_0000_0000_0000_0000 | (rng.getrandbits(76) & 0xFFF_3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def cache_dir() -> Path:
    """``$AXMON_BENCH_CACHE``, else ``~/.cache/axmon/bench`` (XDG_CACHE_HOME respected)."""
    explicit = os.environ.get(ENV_BENCH_CACHE)
    return Path(explicit) if explicit else default_cache_home() / "bench"


def cached_query_db(spec: QueryDbSpec, directory: Path | None = None) -> tuple[Path, GenerationStats, bool]:
    """The database of ``spec`` from the cache, built first if missing. Returns its path, how
    it was generated (now or when cached) and whether it came from the cache."""
    folder = directory or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.key}.db"
    meta = folder / f"{spec.key}.json"
    if path.exists() and meta.exists():
        try:
            return path, GenerationStats.from_json(json.loads(meta.read_text())["generation"]), True
        except (KeyError, TypeError, ValueError):
            pass  # a damaged sidecar: build again
    partial = folder / f"{spec.key}.db.partial"
    partial.unlink(missing_ok=True)
    stats = build_query_db(spec, partial)
    os.replace(partial, path)
    meta.write_text(json.dumps({"spec": dataclasses.asdict(spec), "generation": stats.to_json()}, indent=2))
    return path, stats, False


def _write_executions(conn: sqlite3.Connection, executions: list[tuple[Any, ...]], steps: list[tuple[Any, ...]]) -> None:
    """Executions and steps in the views' form (the trace columns left out: none), through the
    store's writer of the compact layout (schema 9); the lists are emptied."""
    write_execution_rows(conn, [(*r, None, None) for r in executions], [(*r, None, None, None) for r in steps])
    executions.clear()
    steps.clear()


def _write_metrics(conn: sqlite3.Connection, samples: list[tuple[str, tuple[Any, ...]]], windows: list[tuple[Any, ...]],
                   hours: list[tuple[Any, ...]]) -> None:
    """Raw samples (with their series keys), window rows and hourly rows in the views' form,
    through the store's writers of the compact layout; the lists are emptied."""
    write_keyed_samples(conn, samples)
    write_window_rows(conn, windows)
    write_tier_rows(conn, "rollup_hours", "hour_start", hours, [])
    samples.clear()
    windows.clear()
    hours.clear()
_ROWS_PER_TRANSACTION = 500_000


def build_query_db(spec: QueryDbSpec, path: Path) -> GenerationStats:
    """Write the synthetic database of ``spec`` to ``path`` (which must not exist).

    The schema comes from :func:`processor.store.db.open_for_writing` (so it is exactly the sink's);
    the secondary indexes are dropped for the load and created again from their stored SQL.
    Executions: uniformly spread start times, a workflow of the simulator each, its steps
    (every step that ran; ~8 % of attempts fail, up to 3 attempts), completed / failed /
    cancelled as the simulator's rates, running when started in the last
    ``running_recent_ms`` (and a few stale ones). Samples: ``SAMPLE_MIX`` over
    :func:`series_catalogue`, uniform in time; a final rollup row per (series, 60 s window)
    that has samples, with exactly their count, sum, min, max and sketch, and the hourly row of
    every (series, hour) as the sink computes it from them (:func:`processor.store.hourly.hourly_row`),
    the daily rows from those (:func:`processor.store.daily.rebuild_daily`), the per-metric-type rows
    from both (:func:`processor.store.type_tier.rebuild_types`) and from the window rows
    (:func:`processor.store.type_windows.rebuild_type_windows`), and the counts that the
    triggers keep (computed after the load, with the triggers dropped during it, as the indexes are).
    """
    began = time.perf_counter()
    conn = cast(sqlite3.Connection, open_for_writing(path))  # a file: the bench's databases are SQLite
    conn.row_factory = None
    indexes = conn.execute(  # the writers look series, names and executions up by key: those indexes stay
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name NOT IN ('series', 'names') AND name != 'idx_exec_id' ORDER BY name"
    ).fetchall()
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")  # 256 MiB
    conn.execute("PRAGMA temp_store = MEMORY")
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name").fetchall()
    for name, _ in triggers:
        conn.execute(f'DROP TRIGGER "{name}"')
    rng = random.Random(spec.seed)
    t0 = time.perf_counter()
    executions, steps = _load_executions(conn, spec, rng)
    t1 = time.perf_counter()
    samples, rollups, hourly, hourly_s, series = _load_samples(conn, spec, rng)
    t2 = time.perf_counter()
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO metric_rollup_day_counts(metric_type, day_start, series, windows) SELECT metric_type, "
        f"window_start - window_start % {DAY_MS}, series, COUNT(*) FROM metric_rollups GROUP BY 1, 2, 3")
    conn.execute("INSERT INTO metric_counts(metric_type, tenant, samples) SELECT metric_type, COALESCE(tenant_id, ''), "
                 "COUNT(*) FROM performance_metrics GROUP BY 1, 2")
    rebuild_daily(conn)
    rebuild_types(conn)
    rebuild_type_windows(conn)
    conn.execute("COMMIT")
    daily = int(conn.execute("SELECT COUNT(*) FROM metric_rollups_daily").fetchone()[0])
    t2b = time.perf_counter()
    for _, sql in [*indexes, *triggers]:
        conn.execute(sql)
    t3 = time.perf_counter()
    conn.execute("PRAGMA journal_mode = WAL")  # as the sink leaves it
    conn.close()
    return GenerationStats(
        executions=executions, steps=steps, samples=samples, rollups=rollups, hourly=hourly, daily=daily,
        tenants=spec.tenants, series=series, executions_s=t1 - t0, samples_s=t2 - t1, hourly_s=hourly_s,
        daily_s=t2b - t2, indexes_s=t3 - t2b,
        total_s=time.perf_counter() - began,
        file_bytes=path.stat().st_size,
    )


def _pick(rng: random.Random, outcomes: Sequence[tuple[str, float]]) -> str:
    r = rng.random()
    for name, p in outcomes:
        r -= p
        if r < 0:
            return name
    return outcomes[-1][0]


def _load_executions(conn: sqlite3.Connection, spec: QueryDbSpec, rng: random.Random) -> tuple[int, int]:
    tenants = tenant_names(spec.tenants)
    users = [f"user_{i}" for i in range(20)]
    priorities = ("low", "normal", "high")
    stats: dict[str, list[int]] = {t: [0] * 8 for t in tenants}  # total, 5 statuses, duration sum, count
    status_index = {"pending": 1, "running": 2, "completed": 3, "failed": 4, "cancelled": 5}
    gap = (spec.end_ms - spec.start_ms - 60_000) / max(1, spec.executions)
    running_from = spec.end_ms - spec.running_recent_ms
    exec_rows: list[tuple[Any, ...]] = []
    step_rows: list[tuple[Any, ...]] = []
    total_steps = 0
    lognorm = rng.lognormvariate
    randrange = rng.randrange
    conn.execute("BEGIN")
    for n in range(spec.executions):
        started = spec.start_ms + int(n * gap) + randrange(max(1, int(gap)))
        exec_id = fast_uuid7(started, rng)
        tenant = tenants[n % len(tenants)]
        workflow_id, workflow_name, plan = WORKFLOWS[randrange(len(WORKFLOWS))]
        running = started >= running_from or rng.random() < spec.stale_running_rate
        outcome = "running" if running else _pick(rng, _EXECUTION_OUTCOMES)
        stop_at = len(plan)
        if outcome == "running":
            stop_at = randrange(len(plan)) + 1 if started < running_from else min(len(plan), 1 + (spec.end_ms - started) // 60_000)
        elif outcome == "cancelled":
            stop_at = randrange(len(plan))
        elif outcome == "failed":
            stop_at = randrange(len(plan)) + 1
        now = started
        tokens = 0
        cost = 0.0
        done = failed_steps = 0
        current: str | None = None
        for index in range(stop_at):
            step_key, step_name = plan[index]
            now += randrange(1, 50)
            step_started = now
            current = step_key
            last = index == stop_at - 1
            retries = 0
            error: str | None = None
            model = MODELS[randrange(len(MODELS))]
            attempts = 1
            while attempts < 3 and rng.random() < 0.08:  # failed and retried
                attempts += 1
                retries += 1
                error = f"{model}: rate limited"
            for _ in range(attempts):
                now += int(lognorm(6.5, 0.6))
            now += retries * randrange(100, 1_000)
            total_steps += 1
            step_id = fast_uuid7(step_started, rng)
            if last and outcome == "running":
                step_rows.append((step_id, exec_id, step_key, step_name, "running", step_started, None, None, retries,
                                  error, None, None, None, None))
            elif last and outcome == "failed":
                failed_steps += 1
                step_rows.append((step_id, exec_id, step_key, step_name, "failed", step_started, now,
                                  now - step_started, retries, f"{model}: rate limited", None, None, None, None))
            else:
                done += 1
                t = randrange(200, 4000)
                c = round(rng.uniform(0.0005, 0.02), 6)
                tokens += t
                cost += c
                step_rows.append((step_id, exec_id, step_key, step_name, "completed", step_started, now,
                                  now - step_started, retries, error, randrange(500, 20_000), randrange(100, 5_000),
                                  t, c))
        completed_at = None if outcome == "running" else now + 1
        duration = None if completed_at is None else completed_at - started
        error_message = None
        if outcome == "failed":
            error_message = f"step {current} failed after {1 + randrange(3)} attempt(s)"
        elif outcome == "cancelled":
            error_message = "cancelled by user"
        metadata = f'{{"run":{n},"priority":"{priorities[randrange(3)]}"}}'
        exec_rows.append((
            exec_id, workflow_id, workflow_name, tenant, users[randrange(len(users))], outcome, started, completed_at,
            duration, len(plan), done, failed_steps, current, error_message, metadata,
            tokens if done else None, round(cost, 6) if done else None, completed_at or now,
        ))
        s = stats[tenant]
        s[0] += 1
        s[status_index[outcome]] += 1
        if duration is not None:
            s[6] += duration
            s[7] += 1
        if len(step_rows) >= _ROWS_PER_TRANSACTION:
            _write_executions(conn, exec_rows, step_rows)
            conn.execute("COMMIT")
            conn.execute("BEGIN")
    _write_executions(conn, exec_rows, step_rows)
    conn.executemany(
        "INSERT INTO workflow_stats(tenant_id, total, pending, running, completed, failed, cancelled, duration_sum, "
        "duration_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(t, *v) for t, v in stats.items() if v[0]],
    )
    conn.execute("COMMIT")
    return spec.executions, total_steps


_POOL = 65_536


def _value_pools(rng: random.Random) -> dict[str, list[float]]:
    """Values per kind of series, drawn once: samples pick from these (same distributions as
    drawing each, a fraction of the cost)."""
    return {
        "latency": [round(rng.lognormvariate(6.5, 0.6) * rng.uniform(0.2, 0.5), 3) for _ in range(_POOL)],
        "percent": [round(rng.uniform(5, 95), 2) for _ in range(_POOL)],
        "queue": [float(rng.randrange(0, 40)) for _ in range(_POOL)],
        "duration": [float(int(rng.lognormvariate(7.5, 0.7))) for _ in range(_POOL)],
        "count": [1.0] * _POOL,
    }


def _load_samples(conn: sqlite3.Connection, spec: QueryDbSpec, rng: random.Random) -> tuple[int, int, int, float, int]:
    """Samples in time order, one hour at a time; each hour's rollups follow its samples, and
    the hourly rows of the hours completed. Returns the samples, rollups and hourly rows
    written, the seconds spent on the hourly rows, and the series."""
    catalogue = series_catalogue(spec.tenants)
    weights = [s.weight for s in catalogue]
    cum: list[float] = []
    acc = 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    statics = [(s.metric_type, s.unit, s.labels_json, s.tenant) for s in catalogue]
    series_text = [s.series_json for s in catalogue]
    pools = _value_pools(rng)
    series_pool = [pools[s.kind] for s in catalogue]
    uniform = rng.random
    log_gamma = math.log((1 + DEFAULT_RELATIVE_ACCURACY) / (1 - DEFAULT_RELATIVE_ACCURACY))
    hour = 3_600_000
    hours = math.ceil((spec.end_ms - spec.start_ms) / hour)
    per_hour, extra = divmod(spec.samples, hours)
    indices = range(len(catalogue))
    samples = rollups = hourly = 0
    hourly_s = 0.0
    sample_rows: list[tuple[str, tuple[Any, ...]]] = []
    rollup_rows: list[tuple[Any, ...]] = []
    hourly_rows: list[tuple[Any, ...]] = []
    pending: dict[tuple[int, int], list[tuple[Any, ...]]] = {}
    """(series index, hour) -> its window rows so far, in time order"""

    def finish_hours(before: int | None) -> None:
        """The hourly rows of the pending hours that end at or before ``before`` (all: None)."""
        nonlocal hourly, hourly_s
        began = time.perf_counter()
        for key in [k for k in pending if before is None or k[1] + HOUR_MS <= before]:
            row = hourly_row(series_text[key[0]], key[1], [w[1:] for w in pending.pop(key)])
            if row is not None:
                hourly_rows.append(row)
                hourly += 1
        hourly_s += time.perf_counter() - began
    conn.execute("BEGIN")
    for h in range(hours):
        base = spec.start_ms + h * hour
        n = per_hour + (1 if h < extra else 0)
        times = sorted([base + int(uniform() * hour) for _ in range(n)])
        picks = rng.choices(indices, cum_weights=cum, k=n)
        windows: dict[tuple[int, int], list[Any]] = {}
        for ts, i in zip(times, picks):
            value = series_pool[i][int(uniform() * _POOL)]
            metric_type, unit, labels, tenant = statics[i]
            sample_rows.append((series_text[i], (fast_uuid7(ts, rng), ts, metric_type, value, unit, labels, tenant)))
            key = (i, ts - ts % WINDOW_MS)
            acc_w = windows.get(key)
            sketch_key = math.ceil(math.log(value) / log_gamma) if value > MIN_MAGNITUDE else None
            if acc_w is None:
                windows[key] = [1, value, value, value, {sketch_key: 1}]
            else:
                acc_w[0] += 1
                acc_w[1] += value
                if value < acc_w[2]:
                    acc_w[2] = value
                if value > acc_w[3]:
                    acc_w[3] = value
                b = acc_w[4]
                b[sketch_key] = b.get(sketch_key, 0) + 1
        for (i, start), (count, total, low, high, buckets) in sorted(windows.items(), key=lambda kv: kv[0][1]):
            zero = buckets.pop(None, 0)
            sketch = encode(QuantileSketch(DEFAULT_RELATIVE_ACCURACY, buckets, {}, zero))
            metric_type, unit, labels, tenant = statics[i]
            row = (series_text[i], start, start + WINDOW_MS, tenant, metric_type, labels, unit, count, total, low, high,
                   sketch, 1)
            rollup_rows.append(row)
            pending.setdefault((i, hour_of(start)), []).append(row)
        samples += n
        rollups += len(windows)
        finish_hours(base + hour)
        if len(sample_rows) + len(rollup_rows) + len(hourly_rows) >= _ROWS_PER_TRANSACTION:
            _write_metrics(conn, sample_rows, rollup_rows, hourly_rows)
            conn.execute("COMMIT")
            conn.execute("BEGIN")
    finish_hours(None)
    _write_metrics(conn, sample_rows, rollup_rows, hourly_rows)
    conn.execute("COMMIT")
    return samples, rollups, hourly, hourly_s, len(catalogue)


# -- storage -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableBytes:
    """Bytes a table takes with its indexes, from ``dbstat`` (or estimated)."""

    table: str
    table_bytes: int
    index_bytes: int
    rows: int
    exact: bool
    """From ``dbstat``; else page count times the table's share of the rows."""

    @property
    def total(self) -> int:
        return self.table_bytes + self.index_bytes


def table_bytes(path: Path) -> dict[str, TableBytes]:
    """Per table: its own pages and its indexes' pages, in bytes (``dbstat``: ``SELECT name,
    sum(pgsize) FROM dbstat GROUP BY name``, indexes mapped to their table through
    ``sqlite_master``). Without ``dbstat``, the file size is split by row counts (rough)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        owners = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        rows = {t: int(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0])
                for t, in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
        try:
            sizes = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
            exact = True
        except sqlite3.DatabaseError:
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
            everything = sum(rows.values()) or 1
            sizes = {t: page_size * pages * r // everything for t, r in rows.items()}
            exact = False
    finally:
        conn.close()
    out: dict[str, TableBytes] = {}
    for table, count in rows.items():
        own = int(sizes.get(table, 0))
        idx = sum(int(v) for name, v in sizes.items() if name != table and owners.get(name) == table)
        out[table] = TableBytes(table, own, idx, count, exact)
    return out


# -- simulated data ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Simulation:
    """A simulated scenario, folded the way the worker folds it."""

    events: tuple[Event, ...]
    """The scenario's events in event-time order (what engines publish)."""
    snapshots: tuple[dict[str, Any], ...]
    """The final snapshot of every execution (what the sink ends up writing)."""
    stream: tuple[dict[str, Any], ...]
    """A snapshot after every lifecycle event (what ``axmon.execution-state`` carries); empty
    unless asked for."""
    recorded: tuple[MetricRecorded, ...]
    """The samples the engines recorded."""
    derived: tuple[MetricRecorded, ...]
    """The samples the worker derives from the lifecycle events, in event-time order."""

    @property
    def samples(self) -> list[MetricRecorded]:
        """Recorded and derived samples in event-time order (the metrics topic's content)."""
        return sorted((*self.recorded, *self.derived), key=lambda s: s.occurred_at)


def simulate(config: ScenarioConfig, *, stream: bool = False) -> Simulation:
    """Generate ``config``'s scenario and fold its lifecycle events per execution."""
    events = generate_scenario(config)
    states: dict[str, ExecutionState] = {}
    snaps: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, LifecycleEvent):
            state = apply(states.get(event.execution_id), event)
            states[event.execution_id] = state
            if stream:
                snaps.append(snapshot(state))
    derived = sorted((s for state in states.values() for s in derived_samples(state)), key=lambda s: s.occurred_at)
    return Simulation(
        events=tuple(events),
        snapshots=tuple(snapshot(s) for s in states.values()),
        stream=tuple(snaps),
        recorded=tuple(e for e in events if isinstance(e, MetricRecorded)),
        derived=tuple(derived),
    )


def shift_snapshot(snap: dict[str, Any], shift_ms: int) -> dict[str, Any]:
    """A copy of an execution snapshot ``shift_ms`` later, with new execution and step ids."""
    def later(value: int | None) -> int | None:
        return None if value is None else value + shift_ms

    started = snap["started_at"] if snap["started_at"] is not None else snap["last_event_at"]
    new_id = uuid7(started + shift_ms)
    steps = []
    for step in snap["steps"]:
        steps.append({
            **step, "id": uuid7((step["started_at"] or started) + shift_ms), "execution_id": new_id,
            "started_at": later(step["started_at"]), "completed_at": later(step["completed_at"]),
        })
    return {
        **snap, "id": new_id, "started_at": later(snap["started_at"]), "completed_at": later(snap["completed_at"]),
        "last_event_at": snap["last_event_at"] + shift_ms, "steps": steps,
    }


def shift_sample(sample: MetricRecorded, shift_ms: int) -> MetricRecorded:
    """A copy of a sample ``shift_ms`` later, with a new event id."""
    at = sample.occurred_at + shift_ms
    return dataclasses.replace(sample, event_id=uuid7(at), occurred_at=at)


def period_of(sim: Simulation) -> int:
    """Event time one copy of ``sim`` covers, rounded up to whole windows (so that copies
    shifted by multiples of it keep the same window alignment)."""
    times = [e.occurred_at for e in sim.events]
    span = max(times) - min(times) + 1
    return -(-span // WINDOW_MS) * WINDOW_MS


def replicate(sim: Simulation, executions: int, samples: int) -> tuple[list[dict[str, Any]], list[MetricRecorded]]:
    """``executions`` final snapshots and ``samples`` samples (recorded and derived): the
    template's, then shifted copies of it (copy ``k`` is ``k`` periods later, with new ids)."""
    period = period_of(sim)
    template_samples = sim.samples
    snaps: list[dict[str, Any]] = []
    k = 0
    while len(snaps) < executions:
        for snap in sim.snapshots:
            if len(snaps) == executions:
                break
            snaps.append(snap if k == 0 else shift_snapshot(snap, k * period))
        k += 1
    out: list[MetricRecorded] = []
    k = 0
    while len(out) < samples and template_samples:
        for sample in template_samples:
            if len(out) == samples:
                break
            out.append(sample if k == 0 else shift_sample(sample, k * period))
        k += 1
    return snaps, out


def rollups_of(samples: Sequence[MetricRecorded], *, final: bool = True, window_ms: int = WINDOW_MS) -> list[dict[str, Any]]:
    """The rollup record of every (series, window) that has samples, as the worker publishes
    it (:meth:`processor.folds.windows.MetricWindow.rollup`), in window order."""
    groups: dict[tuple[Any, int], list[MetricRecorded]] = defaultdict(list)
    for s in samples:
        groups[(series_of(s), window_start(s.occurred_at, window_ms))].append(s)
    out = []
    for (series, start), members in sorted(groups.items(), key=lambda kv: kv[0][1]):
        window = MetricWindow(series, start, start + window_ms, Aggregate.of(float(m.value) for m in members),
                              members[-1].unit)
        out.append(window.rollup(final=final))
    return out


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- profiling this process --------------------------------------------------------------------


class SelfProfile:
    """``py-spy record`` attached to this process for the duration of a ``with`` block
    (collapsed stacks, 200 Hz, busy threads only), written to ``out`` on exit. A no-op when
    ``out`` is ``None``."""

    def __init__(self, out: Path | None, rate: int = 200) -> None:
        self.out = out
        self.rate = rate
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SelfProfile:
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._proc = subprocess.Popen(
                [py_spy(), "record", "--pid", str(os.getpid()), "--rate", str(self.rate), "--format", "raw",
                 "--nolineno", "--output", str(self.out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # let it attach before the work starts
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
