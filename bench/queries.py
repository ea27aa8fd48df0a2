"""Query latencies and storage: :class:`processor.store.queries.Monitor` on a database of a million
executions and ten million metric samples, next to the original design's claims.

1. The database comes from :func:`bench.dbgen.cached_query_db`: generated once per size and
   schema version by direct bulk insert (see :func:`bench.dbgen.build_query_db`), then reused
   from ``~/.cache/axmon/bench`` (``AXMON_BENCH_CACHE``). Generating it is timed and reported
   (from the run that built it, when it came from the cache).
2. One :class:`~processor.store.queries.Monitor` (a read-only connection, as the CLI uses) calls each
   query repeatedly with varying arguments (random execution ids, tenants in turn, ranges ending
   at random points of the last day); every call is timed on its own with a monotonic clock.
   The first call of each query is reported apart (cold SQLite page cache; the OS page cache is
   warm). Each query gets ``calls`` calls, or fewer when they exceed the time budget (at least
   ``min_calls``). Median and p99 (nearest rank) are of the timed calls.
3. Storage: ``dbstat`` page sizes per table and index, divided by the rows they hold.
"""

from __future__ import annotations

import math
import random
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BenchContext, Benchmark, Figure, Report, now
from bench.dbgen import (
    DAY_MS,
    GenerationStats,
    QueryDbSpec,
    TableBytes,
    cached_query_db,
    table_bytes,
    tenant_names,
)
from processor.store.queries import Monitor
from processor.store.schema_execs import id_text

FULL_SPEC = QueryDbSpec(executions=1_000_000, samples=10_000_000)
QUICK_SPEC = QueryDbSpec(executions=20_000, samples=200_000)
HOUR_MS = 3_600_000
CLAIM_HISTORY = (2.0, 5.0)
CLAIM_AGGREGATION = (5.0, 10.0)
CLAIM_SERIES = (2.0, 5.0)
CLAIM_BYTES_PER_EXECUTION = 500.0
CLAIM_BYTES_PER_SAMPLE = 100.0
METRIC = "api.request.duration"


@dataclass(frozen=True, slots=True)
class QueryBenchConfig:
    spec: QueryDbSpec = FULL_SPEC
    calls: int = 100
    """Timed calls per query (after the first, untimed-for-the-median call)."""
    min_calls: int = 3
    budget_s: float = 8.0
    """Per query: stop calling after this much time once ``min_calls`` are done."""
    seed: int = 5
    cache: Path | None = None
    """Where the database is cached (default :func:`bench.dbgen.cache_dir`)."""


@dataclass(frozen=True, slots=True)
class QueryTiming:
    name: str
    claim_ms: tuple[float, float] | None
    """The original design's latency claim (low, high), where it made one."""
    calls: int
    first_ms: float
    median_ms: float
    p99_ms: float
    max_ms: float
    result_size: float
    """Mean rows returned (or data points, or aggregated samples)."""


@dataclass(frozen=True, slots=True)
class StorageResult:
    file_bytes: int
    tables: tuple[TableBytes, ...]
    executions: int
    samples: int

    def _total(self, *names: str) -> int:
        return sum(t.total for t in self.tables if t.table in names)

    @property
    def per_execution(self) -> float:
        """Execution rows and their steps, with every index on them (schema 9: ``executions``,
        ``steps`` and the ``names`` they refer to)."""
        return self._total("workflow_executions_monitor", "workflow_step_executions", "executions", "steps",
                           "names") / max(1, self.executions)

    @property
    def per_execution_row(self) -> float:
        """The execution row alone (no steps), with its indexes (and the ``names``)."""
        return self._total("workflow_executions_monitor", "executions", "names") / max(1, self.executions)

    @property
    def per_sample(self) -> float:
        """Raw sample rows with their indexes (schema 8: ``samples`` and the ``series`` they
        name; before: the ``performance_metrics`` table)."""
        return self._total("performance_metrics", "samples", "series") / max(1, self.samples)

    @property
    def rollups_per_sample(self) -> float:
        return self._total("metric_rollups", "rollup_windows") / max(1, self.samples)

    @property
    def hourly_per_sample(self) -> float:
        return self._total("metric_rollups_hourly", "rollup_hours") / max(1, self.samples)

    @property
    def daily_per_sample(self) -> float:
        """The day tier with the counts that prove it and answer ``get_metric_count``."""
        return self._total("metric_rollups_daily", "rollup_days", "metric_rollup_day_counts",
                           "metric_counts") / max(1, self.samples)

    @property
    def types_per_sample(self) -> float:
        """The per-metric-type tiers (schema 10: ``type_hours`` and ``type_days``; schema 11:
        ``type_windows``)."""
        return self._total("type_hours", "type_days", "type_windows") / max(1, self.samples)

    @property
    def tiers_per_sample(self) -> float:
        """Every rollup tier and count together (issue 17's target: 60 bytes)."""
        return self.rollups_per_sample + self.hourly_per_sample + self.daily_per_sample + self.types_per_sample

    @property
    def exact(self) -> bool:
        return all(t.exact for t in self.tables)


@dataclass(frozen=True, slots=True)
class QueryBenchResult:
    config: QueryBenchConfig
    db_path: Path
    generation: GenerationStats
    cached: bool
    timings: tuple[QueryTiming, ...]
    storage: StorageResult

    def report(self) -> Report:
        figures: list[Figure] = []
        for t in self.timings:
            figures += [
                Figure("first call", t.name, t.first_ms, "ms", 2),
                Figure("median", t.name, t.median_ms, "ms", 2),
                Figure("p99", t.name, t.p99_ms, "ms", 2),
            ]
            if t.claim_ms is not None:
                figures.append(Figure("original claim", t.name, t.claim_ms[1], "ms", 0))
        s, g = self.storage, self.generation
        figures += [
            Figure("measured", "bytes per execution (with steps and indexes)", s.per_execution, "bytes"),
            Figure("original claim", "bytes per execution (with steps and indexes)", CLAIM_BYTES_PER_EXECUTION, "bytes"),
            Figure("measured", "bytes per execution row alone (with its indexes)", s.per_execution_row, "bytes"),
            Figure("measured", "bytes per raw sample (with indexes)", s.per_sample, "bytes"),
            Figure("original claim", "bytes per raw sample (with indexes)", CLAIM_BYTES_PER_SAMPLE, "bytes"),
            Figure("measured", "rollup bytes per raw sample", s.rollups_per_sample, "bytes"),
            Figure("measured", "hourly rollup bytes per raw sample", s.hourly_per_sample, "bytes"),
            Figure("measured", "daily rollup and count bytes per raw sample", s.daily_per_sample, "bytes"),
            Figure("measured", "per-metric-type tier bytes per raw sample", s.types_per_sample, "bytes"),
            Figure("measured", "all rollup tiers and counts, bytes per raw sample", s.tiers_per_sample, "bytes"),
            Figure("measured", "database file", s.file_bytes / 2**20, "MiB"),
            Figure("measured", "generation, total", g.total_s, "s", 1),
            Figure("measured", "generation: executions + steps", g.executions_s, "s", 1),
            Figure("measured", "generation: samples + rollups", g.samples_s, "s", 1),
            Figure("measured", "generation: daily rows + counts", g.daily_s, "s", 1),
            Figure("measured", "generation: secondary indexes", g.indexes_s, "s", 1),
        ]
        spec = self.config.spec
        notes = [
            "'original claim' is the upper end of the original design's range (history 2-5 ms, "
            "aggregation 5-10 ms, 60-point series 2-5 ms; ~500 bytes per execution, ~100 per sample).",
            f"Database: {g.executions:,} executions, {g.steps:,} steps, {g.samples:,} raw samples, {g.rollups:,} "
            f"final rollup rows, {g.hourly:,} hourly rollup rows, {g.daily:,} daily rollup rows ({g.series} series, "
            f"{g.tenants} tenants, "
            f"{spec.span_days} days; the hourly rows took {g.hourly_s:.1f} s of the generation); "
            f"{s.file_bytes / 2**20:,.0f} MiB at {self.db_path}"
            f"{' (from the cache: generation figures are from the run that built it)' if self.cached else ''}.",
            "Bytes by table (table + indexes): " + "; ".join(
                f"{t.table} {t.table_bytes / 2**20:,.1f} + {t.index_bytes / 2**20:,.1f} MiB for {t.rows:,} rows"
                for t in s.tables if t.rows) + ("" if s.exact else " (estimated: no dbstat)"),
            "Timed calls and mean result size (rows, points or samples aggregated): " + "; ".join(
                f"{t.name} {t.calls} calls, {t.result_size:,.0f}" for t in self.timings),
        ]
        return Report(BENCHMARK.name, BENCHMARK.title, METHOD.format(
            executions=spec.executions, samples=spec.samples, calls=self.config.calls,
            min_calls=self.config.min_calls, budget=self.config.budget_s), tuple(figures), tuple(notes))


METHOD = """\
A database of {executions:,} executions (with their steps) and {samples:,} raw metric samples
(plus a final rollup row per series and 60 s window that has samples, the hourly rollup row of
each series and hour merged from them as the sink computes it, the daily row of each series and
UTC day merged from those, the per-metric-type rows of each type merged from those (per hour and
day, per tenant and across tenants) and from the windows (per window start, across tenants), the
trigger-kept counts of windows per day and of samples per type
and tenant, and per-tenant `workflow_stats` counters that agree with the rows) is generated by `bench.dbgen` straight into the sink's schema (bulk `executemany`, `synchronous=OFF`, `journal_mode=OFF`, secondary
indexes built after the load; no `ANALYZE`, as the sink never runs it) and cached in
`~/.cache/axmon/bench` by sizes and schema version. Executions: the simulator's workflows and
outcome rates, uniformly over 30 days; running if started in the last 5 minutes (and 0.05 %
stale). Samples: 38 % `api.request.duration` (3 models x tenants), 16 % system gauges, 46 %
the worker's derived `workflow.execution/step.duration/count` series, uniform over 30 days.
**Queries**: one `processor.store.queries.Monitor` (read-only connection) calls each query up to
{calls} times (at least {min_calls}; fewer when the calls exceed {budget:.0f} s), with random
execution ids, tenants in turn, and ranges ending at random points of the last day (the 1-hour
and 30-day aggregations are not aligned to windows, so their edges come from raw samples, and
the whole hours inside the 30 days from the hourly rows; the 60-point series is aligned to the
minute; the 30 x 1 day series ends where the 30-day aggregation does; the "day-aligned" 30-day
aggregation and series end at a UTC midnight of the last week, so that whole days come from the
daily rows, as a dashboard's day buckets do). Each call is timed
alone; the first call is shown apart. Aggregations are of `api.request.duration`, all tenants unless stated.
**Storage**: `SELECT name, sum(pgsize) FROM dbstat GROUP BY name`, indexes added to their
table, divided by the table's rows (executions include their steps)."""


def _nearest_rank(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def _size(result: Any) -> float:
    if result is None:
        return 0.0
    if isinstance(result, list):
        return float(len(result))
    if isinstance(result, int):
        return 1.0
    if isinstance(result, dict) and "data_points" in result:
        return float(len(result["data_points"]))
    if isinstance(result, dict) and "count" in result and "metric_type" in result:
        return float(result["count"])
    return 1.0


def time_query(name: str, claim: tuple[float, float] | None, call: Callable[[int], Any], config: QueryBenchConfig) -> QueryTiming:
    """Call ``call(i)`` for i = 0, 1, ... and time each call alone."""
    t = now()
    first = call(0)
    first_ms = (now() - t) * 1000
    times: list[float] = []
    sizes = [_size(first)]
    began = now()
    for i in range(1, config.calls + 1):
        if len(times) >= config.min_calls and now() - began > config.budget_s:
            break
        t = now()
        result = call(i)
        times.append((now() - t) * 1000)
        sizes.append(_size(result))
    ordered = sorted(times)
    return QueryTiming(name, claim, len(times), first_ms, statistics.median(ordered), _nearest_rank(ordered, 0.99),
                       ordered[-1], statistics.fmean(sizes))


def _sample_ids(path: Path, executions: int, n: int, rng: random.Random) -> list[str]:
    """``n`` random execution ids (row ids are 1..executions: the rows were inserted in order)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = []
        for _ in range(n):
            row = conn.execute(f"SELECT {id_text('id')} FROM executions WHERE seq = ?",
                               (rng.randrange(1, executions + 1),)).fetchone()
            if row is not None:
                out.append(str(row[0]))
        return out
    finally:
        conn.close()


def run_queries(path: Path, spec: QueryDbSpec, config: QueryBenchConfig) -> tuple[QueryTiming, ...]:
    """Every query of the benchmark on the database at ``path``."""
    rng = random.Random(config.seed)
    n = config.calls + 1
    ids = _sample_ids(path, spec.executions, n, rng)
    tenants = tenant_names(spec.tenants)
    end = spec.end_ms
    hour_ends = [end - rng.randrange(DAY_MS) for _ in range(n)]
    month_ends = [end - rng.randrange(HOUR_MS) for _ in range(n)]
    series_starts = [(end - rng.randrange(DAY_MS)) // 60_000 * 60_000 - HOUR_MS for _ in range(n)]
    midnights = [end - end % DAY_MS - rng.randrange(7) * DAY_MS for _ in range(n)]
    models = ("gpt-small", "gpt-large", "claude-fast")
    with Monitor(path) as m:
        cases: list[tuple[str, tuple[float, float] | None, Callable[[int], Any]]] = [
            ("get_execution(id)", CLAIM_HISTORY, lambda i: m.get_execution(ids[i % len(ids)])),
            ("get_step_executions(id)", CLAIM_HISTORY, lambda i: m.get_step_executions(ids[i % len(ids)])),
            ("get_recent_executions(100)", CLAIM_HISTORY, lambda i: m.get_recent_executions(100)),
            ("get_recent_executions(100, tenant)", CLAIM_HISTORY,
             lambda i: m.get_recent_executions(100, tenants[i % len(tenants)])),
            ("get_active_executions(tenant)", CLAIM_HISTORY, lambda i: m.get_active_executions(tenants[i % len(tenants)])),
            ("get_active_executions()", CLAIM_HISTORY, lambda i: m.get_active_executions()),
            ("get_workflow_stats(tenant)", CLAIM_HISTORY, lambda i: m.get_workflow_stats(tenants[i % len(tenants)])),
            ("get_workflow_stats(None)", CLAIM_HISTORY, lambda i: m.get_workflow_stats(None)),
            ("get_aggregation 1 h", CLAIM_AGGREGATION,
             lambda i: m.get_aggregation(METRIC, hour_ends[i] - HOUR_MS, hour_ends[i])),
            ("get_aggregation 1 h, tenant + model label", CLAIM_AGGREGATION,
             lambda i: m.get_aggregation(METRIC, hour_ends[i] - HOUR_MS, hour_ends[i], tenant_id=tenants[i % len(tenants)],
                                         labels={"model": models[i % len(models)]})),
            ("get_aggregation 30 days", CLAIM_AGGREGATION,
             lambda i: m.get_aggregation(METRIC, month_ends[i] - 30 * DAY_MS, month_ends[i])),
            ("get_time_series 60 x 1 min", CLAIM_SERIES,
             lambda i: m.get_time_series(METRIC, series_starts[i], series_starts[i] + HOUR_MS, 60_000)),
            ("get_aggregation 30 days, day-aligned", CLAIM_AGGREGATION,
             lambda i: m.get_aggregation(METRIC, midnights[i] - 30 * DAY_MS, midnights[i])),
            ("get_time_series 30 x 1 day", None,
             lambda i: m.get_time_series(METRIC, month_ends[i] - 30 * DAY_MS, month_ends[i], DAY_MS)),
            ("get_time_series 30 x 1 day, day-aligned", None,
             lambda i: m.get_time_series(METRIC, midnights[i] - 30 * DAY_MS, midnights[i], DAY_MS)),
            ("get_metric_count(api.request.duration)", None, lambda i: m.get_metric_count(METRIC)),
            ("get_metric_count(api.request.duration, tenant)", None,
             lambda i: m.get_metric_count(METRIC, tenants[i % len(tenants)])),
            ("get_metric_count()", None, lambda i: m.get_metric_count()),
        ]
        return tuple(time_query(name, claim, call, config) for name, claim, call in cases)


def storage_of(path: Path, generation: GenerationStats) -> StorageResult:
    tables = table_bytes(path)
    return StorageResult(path.stat().st_size, tuple(tables.values()), generation.executions, generation.samples)


def run_query_bench(config: QueryBenchConfig) -> QueryBenchResult:
    """Get (or build) the database, time the queries, measure the storage."""
    path, generation, cached = cached_query_db(config.spec, config.cache)
    timings = run_queries(path, config.spec, config)
    return QueryBenchResult(config, path, generation, cached, timings, storage_of(path, generation))


def config_for(ctx: BenchContext) -> QueryBenchConfig:
    """Full (1M / 10M), quick (20k / 200k), or ``--events N``: N executions and 10 N samples."""
    if ctx.events is not None:
        return QueryBenchConfig(spec=QueryDbSpec(executions=ctx.events, samples=10 * ctx.events))
    return QueryBenchConfig(spec=QUICK_SPEC if ctx.quick else FULL_SPEC, budget_s=5.0 if ctx.quick else 8.0)


def run(ctx: BenchContext) -> Report:
    """The registered entry point."""
    began = time.perf_counter()
    result = run_query_bench(config_for(ctx))
    report = result.report()
    return Report(report.name, report.title, report.method, report.figures,
                  (*report.notes, f"Whole benchmark: {time.perf_counter() - began:.0f} s."))


BENCHMARK = Benchmark("queries", "Query latency and storage", run)
