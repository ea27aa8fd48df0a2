"""Sink write throughput: rows per second through :func:`processor.store.sinkdb.write_batch`, next to
plain ``sqlite3`` ``executemany`` of the same rows, in the same run; and the live sink
(:class:`processor.runtime.sink.SinkRunner`) end to end on a real broker.

1. **Data**: a simulated template (:func:`bench.dbgen.simulate`: ``generate_scenario`` folded
   with ``processor.folds.execution.apply`` / ``snapshot``, plus the samples the worker derives) is
   replicated with fresh ids and shifted event time (:func:`bench.dbgen.replicate`) to N final
   execution snapshots (with their steps) and M raw samples; every (series, 60 s window) of
   the samples gets its final rollup (:func:`bench.dbgen.rollups_of`). The records are ordered
   by event time and cut into batches of ``batch_records`` (:class:`processor.store.sinkdb.SinkBatch`,
   with an offset per batch as the live sink records). All of this is built before timing.
2. **Baseline**: a fresh database (:func:`processor.store.db.open_for_writing`: WAL,
   ``synchronous=NORMAL``), and per batch one ``BEGIN IMMEDIATE`` ... ``COMMIT`` with one plain
   ``INSERT`` ``executemany`` per table of the row tuples the sink would write (executions,
   steps, samples, rollups), prepared beforehand: no upsert, no per-tenant stats, no JSON.
3. **Sink**: another fresh database, :func:`~processor.store.sinkdb.write_batch` per batch (row
   building, JSON encoding, the old-row lookup for the stats, upserts, stats, offsets).
4. **Rewrite**: the same batches written again with ``write_batch`` into the sink's database:
   every row exists, so every upsert updates and every stats delta moves a row to itself.
5. **Row building alone**: the dict-to-tuple conversion the sink does inside ``write_batch``
   (:func:`processor.store.sinkdb.execution_row`, ``step_row`` and the sample / rollup encodings),
   timed without SQLite, to split the sink's cost.
6. **Live**: fresh topics get what a worker would have published for a smaller simulated
   scenario (an ``execution-state`` snapshot after every lifecycle event, every raw sample on
   ``metrics``, and per window a non-final then a final rollup); a plain aiokafka consumer reads
   and JSON-decodes all of it (its baseline), then ``SinkRunner(...).run(until_idle_s=...)``
   consumes it into a fresh database; records/s counts from ``run()`` to the batch that holds
   the last record (the idle wait is not counted). Then the real ``axmon sink`` process
   (:class:`processor.ops.children.AxmonChild`, default batches) reads the same topics into another
   fresh database, timed from launch until its stored offsets cover every record, and its
   peak RSS (``VmHWM``) is read before SIGTERM: the figure the in-process run cannot give.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import (
    BenchContext,
    BenchError,
    Benchmark,
    Figure,
    Report,
    cpu_seconds,
    create_contract_topics,
    delete_topics_with_prefix,
    now,
    peak_rss_kib,
    rate,
    subprocess_env,
    unique_prefix,
)
from bench.dbgen import SelfProfile, Simulation, chunks, replicate, rollups_of, simulate
from bench.profiling import summarize
from processor.folds.aggregate import Aggregate
from processor.folds.sketch_codec import encode_json
from processor.folds.windows import MetricWindow, rollup_key, series_of, window_start
from processor.ops.children import AxmonChild
from processor.ops.settle import sink_topics, stored_sink_offsets
from processor.runtime.sink import SinkConfig, SinkCounters, SinkRunner
from processor.settings import Settings
from processor.store.db import open_for_writing
from processor.store.schema_execs import STATUSES
from processor.store.series import event_id, own_unit
from processor.store.sinkdb import SinkBatch, execution_row, step_row, write_batch
from producers.client import route
from producers.simulator import ScenarioConfig
from schemas.codec import decode_event, encode_event
from schemas.events import MetricRecorded
from schemas.topics import Topics

Rows = list[tuple[Any, ...]]

HOUR_MS = 3_600_000
BENCH_TOPIC = "bench.sink"
"""The topic name the offline batches record their offsets under."""


@dataclass(frozen=True, slots=True)
class SinkBenchConfig:
    executions: int = 100_000
    """N: execution snapshots written (each with its steps)."""
    samples: int = 1_000_000
    """M: raw samples written."""
    batch_records: int = 5_000
    template_executions: int = 2_000
    """Executions simulated for the template that is replicated."""
    tenants: int = 5
    seed: int = 17
    runs: int = 1
    """Timed runs of the baseline and the sink (each on a fresh database, alternating which goes
    first); the medians are reported."""
    live_executions: int | None = 5_000
    """Simulated executions for the live path (``None``: skip it)."""
    partitions: int = 4
    live_timeout_s: float = 900.0
    profile_dir: Path | None = None
    postgres: bool = True
    """Also time ``write_batch`` on a PostgreSQL 15 the benchmark starts (Debian's binaries,
    ``scripts/ensure-postgres.sh``; skipped with a note when they are missing)."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """One way of writing the batches."""

    rows: int
    """Execution + step + sample + rollup rows."""
    records: int
    """Executions + samples + rollups (what the sink counts)."""
    runs: tuple[float, ...]

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs)

    @property
    def rows_per_s(self) -> float:
        return rate(self.rows, self.seconds)

    @property
    def records_per_s(self) -> float:
        return rate(self.records, self.seconds)


@dataclass(frozen=True, slots=True)
class SinkProcessResult:
    """``python -m processor.cli sink`` (default batches) from launch until its database held
    every record of the live topics."""

    records: int
    seconds: float
    """Launch (process start, imports, connecting included) -> every record stored."""
    peak_rss_kib: int
    """``VmHWM`` just before SIGTERM."""
    cpu_s: float
    exit_code: int | None

    @property
    def per_s(self) -> float:
        return rate(self.records, self.seconds)


@dataclass(frozen=True, slots=True)
class LiveResult:
    records: int
    by_topic: tuple[tuple[str, int], ...]
    produce_s: float
    baseline_s: float
    """Plain consumer: first ``getmany`` to the last record decoded."""
    sink_s: float
    """``SinkRunner.run()`` called -> the batch holding the last record written."""
    first_batch_s: float
    """``run()`` called -> the first batch written (connecting, seeking, the first fetch)."""
    batches: int
    db_rows: int
    process: SinkProcessResult | None = None
    """The real ``axmon sink`` process on the same topics (``None``: not measured)."""

    @property
    def baseline_per_s(self) -> float:
        return rate(self.records, self.baseline_s)

    @property
    def sink_per_s(self) -> float:
        return rate(self.records, self.sink_s)


@dataclass(frozen=True, slots=True)
class SinkBenchResult:
    config: SinkBenchConfig
    executions: int
    steps: int
    samples: int
    rollups: int
    batches: int
    prepare_s: float
    baseline: WriteResult
    sink: WriteResult
    rewrite: WriteResult
    row_building_s: float
    live: LiveResult | None
    live_skipped: str | None = None
    postgres: WriteResult | None = None
    postgres_skipped: str | None = None
    profile: Path | None = None
    live_profile: Path | None = None

    def report(self) -> Report:
        b, s, r = self.baseline, self.sink, self.rewrite
        figures = [
            Figure("baseline: plain executemany", "rows/s", b.rows_per_s, "rows/s"),
            Figure("sink: write_batch", "rows/s", s.rows_per_s, "rows/s"),
            Figure("sink: rewrite (all upserts)", "rows/s", r.rows_per_s, "rows/s"),
            Figure("baseline: plain executemany", "records/s", b.records_per_s, "records/s"),
            Figure("sink: write_batch", "records/s", s.records_per_s, "records/s"),
            Figure("sink: rewrite (all upserts)", "records/s", r.records_per_s, "records/s"),
            Figure("baseline: plain executemany", "seconds", b.seconds, "s", 2),
            Figure("sink: write_batch", "seconds", s.seconds, "s", 2),
            Figure("sink: rewrite (all upserts)", "seconds", r.seconds, "s", 2),
            Figure("sink: write_batch", "sink / baseline (rate ratio)", s.rows_per_s / b.rows_per_s if b.rows_per_s else 0, "x", 3),
            Figure("sink: rewrite (all upserts)", "sink / baseline (rate ratio)", r.rows_per_s / b.rows_per_s if b.rows_per_s else 0, "x", 3),
            Figure("sink: write_batch", "of which row building (no SQL)", self.row_building_s, "s", 2),
        ]
        if self.postgres is not None:
            pg = self.postgres
            figures += [
                Figure("sink: write_batch on PostgreSQL", "rows/s", pg.rows_per_s, "rows/s"),
                Figure("sink: write_batch on PostgreSQL", "records/s", pg.records_per_s, "records/s"),
                Figure("sink: write_batch on PostgreSQL", "seconds", pg.seconds, "s", 2),
            ]
        live = self.live
        if live is not None:
            figures += [
                Figure("live: plain consumer + JSON decode", "records/s", live.baseline_per_s, "records/s"),
                Figure("live: SinkRunner", "records/s", live.sink_per_s, "records/s"),
                Figure("live: SinkRunner", "sink / baseline (rate ratio)", live.sink_per_s / live.baseline_per_s if live.baseline_per_s else 0, "x", 3),
                Figure("live: plain consumer + JSON decode", "seconds", live.baseline_s, "s", 2),
                Figure("live: SinkRunner", "seconds", live.sink_s, "s", 2),
            ]
        if live is not None and live.process is not None:
            proc = live.process
            figures += [
                Figure("live: axmon sink process", "records/s", proc.per_s, "records/s"),
                Figure("live: axmon sink process", "seconds", proc.seconds, "s", 2),
                Figure("live: axmon sink process", "sink peak RSS", proc.peak_rss_kib / 1024, "MiB", 1),
            ]
        notes = [
            f"Offline: {self.executions:,} executions with {self.steps:,} steps, {self.samples:,} raw samples and "
            f"{self.rollups:,} final rollups in {self.batches:,} batches of up to {self.config.batch_records:,} records "
            f"({b.rows:,} rows); preparing them took {self.prepare_s:.1f} s (not timed). 'sink / baseline' is a ratio "
            "of rates (1.0 = as fast as plain inserts); offline it compares rows/s, live records/s.",
            f"Runs (s): baseline {', '.join(f'{x:.2f}' for x in b.runs)}; write_batch "
            f"{', '.join(f'{x:.2f}' for x in s.runs)} (baseline first in odd-numbered runs, write_batch first in "
            "even-numbered ones; medians reported). The rewrite is one run; samples already stored are ignored "
            "(INSERT OR IGNORE), executions and rollups are updated.",
            f"Row building (execution_row, step_row, sample and rollup tuples with their JSON) alone took "
            f"{self.row_building_s:.2f} s of the sink's {s.seconds:.2f} s "
            f"({self.row_building_s / s.seconds:.0%}).",
        ]
        if self.postgres is not None:
            notes.append("PostgreSQL: the same batches through the same write_batch on a fresh PostgreSQL 15 the benchmark "
                         "starts in a temporary directory on this machine (fsync, synchronous_commit and "
                         "full_page_writes off, as the tests run it: an upper bound for a durable server), one "
                         "connection, the rows checked after.")
        elif self.postgres_skipped:
            notes.append(f"PostgreSQL: not timed ({self.postgres_skipped}).")
        if live is not None:
            topics = ", ".join(f"{t.rpartition('.')[2]} {n:,}" for t, n in live.by_topic)
            notes.append(f"Live: {live.records:,} records ({topics}) published in {live.produce_s:.1f} s; the sink wrote "
                         f"{live.batches:,} batches ({live.db_rows:,} rows in the database); its first batch came "
                         f"{live.first_batch_s:.2f} s after run(); excluding that, "
                         f"{rate(live.records, live.sink_s - live.first_batch_s):,.0f} records/s.")
            if live.process is not None:
                notes.append(f"Live, axmon sink process: {live.process.records:,} records stored "
                             f"{live.process.seconds:.2f} s after launch (process start and imports included); "
                             f"peak RSS {live.process.peak_rss_kib / 1024:.1f} MiB, CPU {live.process.cpu_s:.1f} s, "
                             f"exit code after SIGTERM {live.process.exit_code}.")
        elif self.live_skipped:
            notes.append(f"Live path not measured: {self.live_skipped}")
        for label, path in (("write_batch", self.profile), ("live sink", self.live_profile)):
            if path is not None and path.exists():
                summary = summarize(path, top=10)
                hot = "; ".join(f"{e.function} {e.self_share:.0%}" for e in summary.by_self)
                notes.append(f"{label} profiled with py-spy ({path}); most self time: {hot}")
        return Report(BENCHMARK.name, BENCHMARK.title, METHOD.format(
            n=self.executions, m=self.samples, batch=self.config.batch_records,
            template=self.config.template_executions, runs=self.config.runs), tuple(figures), tuple(notes))


METHOD = """\
**Data**: a simulated template ({template:,} executions of `generate_scenario`, folded with
`processor.folds.execution.apply`/`snapshot`, plus the samples the worker derives from them) is
replicated with fresh UUIDv7 ids and shifted event time to {n:,} final execution snapshots
(with their steps) and {m:,} raw samples; each (series, 60 s window) gets its final rollup.
Records are ordered by event time and cut into batches of {batch:,} (`SinkBatch`), built
before timing.
**Baseline**: a fresh database (`processor.store.db.open_for_writing`, WAL, `synchronous=NORMAL`);
per batch one `BEGIN IMMEDIATE`/`COMMIT` with a plain `INSERT` `executemany` per table of the
prepared row tuples the sink writes (executions, steps, samples, rollups): no upsert, no stats,
no JSON encoding.
**Sink**: a fresh database, `processor.store.sinkdb.write_batch` per batch. **Rewrite**: the same
batches again into the sink's database (every upsert updates an existing row). Baseline and
sink: {runs} run(s) each on fresh databases, alternating which goes first; medians. **Row
building**: the sink's dict-to-tuple conversion alone, without SQLite.
**Live**: fresh topics hold what a worker would publish for a smaller scenario (a snapshot
per lifecycle event on `execution-state`, every sample on `metrics`, a non-final and a final
rollup per window); a plain aiokafka consumer reads and JSON-decodes it all, then
`SinkRunner(...).run(until_idle_s=...)` (default `SinkConfig`: 5,000 records or 500 ms per
transaction) consumes it into a fresh database, timed from `run()` to the batch that holds the
last record. **axmon sink process**: then `python -m processor.cli sink` (the same defaults) is
started on the same topics with another fresh database and timed from launch (process start
and imports included) until its `sink_offsets` cover every record; its peak RSS is `VmHWM`
read just before SIGTERM."""


# -- data ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    batches: tuple[SinkBatch, ...]
    tuples: tuple[tuple[Rows, Rows, Rows, Rows, Rows, Rows], ...]
    """Per batch: new series, new names, execution, step, sample and window row tuples (the baseline's input)."""
    executions: int
    steps: int
    samples: int
    rollups: int

    @property
    def rows(self) -> int:
        return self.executions + self.steps + self.samples + self.rollups

    @property
    def records(self) -> int:
        return self.executions + self.samples + self.rollups


def rollup_tuple(r: dict[str, Any]) -> tuple[Any, ...]:
    """A rollup record as :func:`processor.store.sinkdb.write_rollups` binds it."""
    return (r["series"], r["window_start"], r["window_end"], r["tenant_id"], r["metric_type"],
            orjson.dumps(r["labels"], option=orjson.OPT_SORT_KEYS).decode(), r["unit"], r["count"],
            r["sum"], r["min"], r["max"], encode_json(r["sketch"]), int(bool(r["final"])))


def batch_tuples(batch: SinkBatch, known: dict[str, tuple[int, str]],
                 names: dict[str, int], seqs: dict[str, int]) -> tuple[Rows, Rows, Rows, Rows, Rows, Rows]:
    """The rows ``write_batch`` writes for ``batch``, as tuples, in the compact layouts (schemas 8
    and 9): the series new in the batch (numbered in the order they appear; ``known`` holds those
    of the batches before, and gets these), the names new in it (likewise, ``names``; and the
    executions' row ids, ``seqs``), executions, steps, samples and windows."""
    executions = list(batch.executions.values())
    new: Rows = []
    new_names: Rows = []

    def name(text: str | None) -> int | None:
        if text is None:
            return None
        found = names.get(text)
        if found is None:
            found = names[text] = len(names) + 1
            new_names.append((found, text))
        return found

    exec_rows: Rows = []
    step_rows: Rows = []
    for snapshot in executions:
        r = execution_row(snapshot)
        seq = seqs.setdefault(r[0], len(seqs) + 1)
        exec_rows.append((seq, event_id(r[0]), name(r[3]), name(r[1]), name(r[2]), name(r[4]), STATUSES.index(r[5]),
                          *r[6:12], name(r[12]), *r[13:20]))
        for step in snapshot["steps"]:
            t = step_row(step)
            step_rows.append((seq, event_id(t[0]), name(t[2]), name(t[3]), STATUSES.index(t[4]), *t[5:17]))

    def series(key: str, tenant: str | None, metric_type: str, labels: str, unit: str) -> tuple[int, str]:
        found = known.get(key)
        if found is None:
            found = known[key] = (len(known) + 1, unit)
            new.append((found[0], key, tenant, metric_type, labels, unit))
        return found

    samples: Rows = []
    for key, sample in batch.samples.values():  # (series key, performance_metrics row): sinkdb.sample_row
        id_, unit = series(key, sample[6], sample[2], sample[5], sample[4])
        samples.append((id_, sample[1], event_id(sample[0]), sample[3], own_unit(sample[4], unit)))
    windows: Rows = []
    for rollup in batch.rollups.values():
        row = rollup_tuple(rollup)
        id_, unit = series(row[0], row[3], row[4], row[5], row[6])
        windows.append((id_, *row[1:3], *row[7:13], own_unit(row[6], unit)))
    return new, new_names, exec_rows, step_rows, samples, windows


def prepare(config: SinkBenchConfig) -> Prepared:
    """Simulate, replicate, roll up, order by event time and cut into batches."""
    start_ms = int(time.time() * 1000) - 30 * 86_400_000
    sim = simulate(ScenarioConfig(seed=config.seed, tenants=config.tenants, executions=config.template_executions,
                                  start_ms=start_ms, span_ms=10 * 60_000))
    snaps, samples = replicate(sim, config.executions, config.samples)
    rollups = rollups_of(samples, final=True)
    timeline: list[tuple[int, int, Any]] = (
        [(s["last_event_at"], 0, s) for s in snaps]
        + [(s.occurred_at, 1, s) for s in samples]
        + [(r["window_end"], 2, r) for r in rollups]
    )
    timeline.sort(key=lambda item: (item[0], item[1]))
    batches: list[SinkBatch] = []
    for offset, chunk in enumerate(chunks(timeline, config.batch_records)):
        batch = SinkBatch()
        for _, kind, item in chunk:
            if kind == 0:
                batch.add_execution(item)
            elif kind == 1:
                batch.add_sample(item)
            else:
                batch.add_rollup(item)
            batch.records += 1
        batch.consumed(BENCH_TOPIC, 0, (offset + 1) * config.batch_records, 0)
        batches.append(batch)
    steps = sum(len(s["steps"]) for s in snaps)
    known: dict[str, tuple[int, str]] = {}
    names: dict[str, int] = {}
    seqs: dict[str, int] = {}
    return Prepared(tuple(batches), tuple(batch_tuples(b, known, names, seqs) for b in batches), len(snaps), steps, len(samples),
                    len(rollups))


# -- the offline writes ----------------------------------------------------------------------------


_PLAIN = {
    "series": "id, key, tenant_id, metric_type, labels, unit",
    "names": "id, name",
    "executions": "seq, id, tenant_ref, workflow_ref, workflow_name_ref, user_ref, status, started_at, completed_at, "
                  "duration, steps_total, steps_completed, steps_failed, current_step_ref, error_message, metadata, "
                  "tokens_used, cost, last_event_at, trace_id, span_id",
    "steps": "execution, id, step_key_ref, step_name_ref, status, started_at, completed_at, duration, retry_count, "
             "error_message, input_size, output_size, tokens_used, cost, trace_id, span_id, retried_at",
    "samples": "series_id, timestamp, id, value, unit",
    "rollup_windows": "series_id, window_start, window_end, count, sum, min, max, sketch, final, unit",
}
"""Table -> the columns, in the order of the tuples the sink binds."""


def _plain_insert(table: str) -> str:
    columns = _PLAIN[table]
    return f"INSERT INTO {table}({columns}) VALUES ({', '.join('?' for _ in columns.split(','))})"


def write_baseline(path: Path, prepared: Prepared) -> float:
    """Plain ``executemany`` of the prepared tuples, a transaction per batch; returns seconds."""
    conn = open_for_writing(path)
    try:
        sql = [_plain_insert(t) for t in _PLAIN]
        began = now()
        for rows in prepared.tuples:
            conn.execute("BEGIN IMMEDIATE")
            for statement, values in zip(sql, rows):
                conn.executemany(statement, values)
            conn.execute("COMMIT")
        return now() - began
    finally:
        conn.close()


def write_sink(path: Path | str, prepared: Prepared) -> float:
    """``write_batch`` per batch; returns seconds."""
    conn = open_for_writing(path)
    try:
        began = now()
        for batch in prepared.batches:
            write_batch(conn, batch)
        return now() - began
    finally:
        conn.close()


def time_row_building(prepared: Prepared) -> float:
    began = now()
    known: dict[str, tuple[int, str]] = {}
    names: dict[str, int] = {}
    seqs: dict[str, int] = {}
    for batch in prepared.batches:
        batch_tuples(batch, known, names, seqs)
    return now() - began


def _check_rows(path: Path | str, prepared: Prepared) -> None:
    conn = open_for_writing(path)
    try:
        counts = [int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in _PLAIN if t not in ("series", "names")]
    finally:
        conn.close()
    expected = [prepared.executions, prepared.steps, prepared.samples, prepared.rollups]
    if counts != expected:
        raise BenchError(f"{path.name if isinstance(path, Path) else 'PostgreSQL'}: rows {counts} per table, expected {expected}")


# -- the live sink ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveRecords:
    """What a worker would have published for a simulation: (topic, key, value) per record."""

    records: tuple[tuple[str, bytes, bytes], ...]

    def by_topic(self) -> tuple[tuple[str, int], ...]:
        counts: dict[str, int] = {}
        for topic, _, _ in self.records:
            counts[topic] = counts.get(topic, 0) + 1
        return tuple(counts.items())


def live_records(sim: Simulation, topics: Topics) -> LiveRecords:
    """Snapshots after every lifecycle event, every sample (recorded and derived, in event-time
    order), and per (series, window) a non-final rollup of its first half and the final one."""
    out: list[tuple[str, bytes, bytes]] = [(topics.execution_state, s["id"].encode(), orjson.dumps(s)) for s in sim.stream]
    samples = sim.samples
    for s in samples:
        topic, key = route(s, topics)
        out.append((topic, key, encode_event(s)))
    groups: dict[tuple[Any, int], list[MetricRecorded]] = {}
    for s in samples:
        groups.setdefault((series_of(s), window_start(s.occurred_at, 60_000)), []).append(s)
    for (series, start), members in sorted(groups.items(), key=lambda kv: kv[0][1]):
        key = rollup_key(series, start)
        half = members[: max(1, len(members) // 2)]
        for part, final in ((half, False), (members, True)):
            window = MetricWindow(series, start, start + 60_000, Aggregate.of(float(m.value) for m in part), part[-1].unit)
            out.append((topics.metric_rollups, key, orjson.dumps(window.rollup(final=final))))
    return LiveRecords(tuple(out))


async def produce(bootstrap: str, records: Sequence[tuple[str, bytes, bytes]]) -> float:
    """Publish fast (lz4, linger, big batches, acks=1); returns seconds until all are acknowledged."""
    began = now()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, compression_type="lz4", linger_ms=20,
                                max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024,
                                client_id="axmon-bench-sink")
    await producer.start()
    try:
        for chunk in chunks(records, 20_000):
            futures = [await producer.send(topic, value, key=key) for topic, key, value in chunk]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return now() - began


async def plain_consume(bootstrap: str, topics: Sequence[str], partitions: int, expected: int, metrics_topic: str,
                        timeout_s: float) -> float:
    """Read ``topics`` from the beginning, JSON-decode every value (``decode_event`` on the
    metrics topic, as the sink does), until ``expected`` records; returns seconds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 * 1024 * 1024, client_id="axmon-bench-sink-baseline")
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count = 0
        began = now()
        while count < expected:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=5_000)
            for tp, messages in fetched.items():
                if tp.topic == metrics_topic:
                    for m in messages:
                        decode_event(m.value or b"")
                else:
                    for m in messages:
                        if m.value is not None:
                            orjson.loads(m.value)
                count += len(messages)
            if now() - began > timeout_s:
                raise BenchError(f"live baseline: {count} of {expected} records after {timeout_s:.0f} s")
        return now() - began
    finally:
        await consumer.stop()


async def run_sink_process(bootstrap: str, topics: Topics, partitions: int, total: int, workdir: Path,
                           timeout_s: float) -> SinkProcessResult:
    """``axmon sink`` as a child process on ``topics`` (holding ``total`` records from offset 0)
    into a fresh database in ``workdir``, until its stored offsets cover them all; its peak RSS."""
    db = workdir / "live-process.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    child = AxmonChild("sink-process", [
        "sink", "--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--partitions", str(partitions),
        "--db", str(db),
    ], workdir, subprocess_env())
    sources = set(sink_topics(topics))
    began = now()
    child.start()
    try:
        while sum(o for (t, _), o in stored_sink_offsets(db).items() if t in sources) < total:
            if not child.alive():
                raise BenchError(f"axmon sink exited with code {child.proc.returncode if child.proc else None}:\n"
                                 f"{child.tail(30)}")
            if now() - began > timeout_s:
                raise BenchError(f"axmon sink: not every record stored after {timeout_s:.0f} s:\n{child.tail(30)}")
            await asyncio.sleep(0.05)
        seconds = now() - began
        assert child.proc is not None
        peak, cpu = peak_rss_kib(child.proc.pid), cpu_seconds(child.proc.pid)
    finally:
        code = await asyncio.to_thread(child.stop)
    return SinkProcessResult(total, seconds, peak, cpu, code)


async def run_live(bootstrap: str, config: SinkBenchConfig, workdir: Path, profile: Path | None) -> LiveResult:
    """The live path on fresh topics (deleted afterwards)."""
    assert config.live_executions is not None
    start_ms = int(time.time() * 1000) - 3 * HOUR_MS
    sim = simulate(ScenarioConfig(seed=config.seed + 1, tenants=config.tenants, executions=config.live_executions,
                                  start_ms=start_ms, span_ms=HOUR_MS), stream=True)
    prefix = unique_prefix("sink")
    topics = await create_contract_topics(bootstrap, prefix, config.partitions)
    try:
        records = live_records(sim, topics)
        total = len(records.records)
        produce_s = await produce(bootstrap, records.records)
        settings = Settings(topic_prefix=prefix, partitions=config.partitions)
        runner = SinkRunner(settings, bootstrap, workdir / "live.db", SinkConfig())
        baseline_s = await plain_consume(bootstrap, runner.source_topics, config.partitions, total, topics.metrics,
                                         config.live_timeout_s)
        marks: dict[str, float] = {}

        def on_batch(counters: SinkCounters) -> None:
            t = now()
            marks.setdefault("first", t)
            if counters.records >= total:
                marks.setdefault("done", t)
            if t - marks["began"] > config.live_timeout_s:
                runner.stop()

        with SelfProfile(profile):
            marks["began"] = now()
            counters = await runner.run(until_idle_s=3.0, on_batch=on_batch)
        if "done" not in marks:
            raise BenchError(f"live sink: {counters.records} of {total} records")
        conn = open_for_writing(workdir / "live.db")
        try:
            db_rows = sum(int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in _PLAIN)
        finally:
            conn.close()
        process = await run_sink_process(bootstrap, topics, config.partitions, total, workdir, config.live_timeout_s)
        return LiveResult(total, records.by_topic(), produce_s, baseline_s, marks["done"] - marks["began"],
                          marks["first"] - marks["began"], counters.batches, db_rows, process)
    finally:
        await delete_topics_with_prefix(bootstrap, prefix)


# -- the whole benchmark ---------------------------------------------------------------------------


def run_sink_bench(bootstrap: str | None, config: SinkBenchConfig, workdir: Path) -> SinkBenchResult:
    """Offline writes (always) and the live path (when ``bootstrap`` and ``live_executions``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    t = now()
    prepared = prepare(config)
    prepare_s = now() - t
    base_runs: list[float] = []
    sink_runs: list[float] = []
    rewrite_s = 0.0
    profile = config.profile_dir / "sink-write_batch.collapsed.txt" if config.profile_dir else None
    for n in range(max(1, config.runs)):
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            base_db, sink_db = Path(tmp) / "baseline.db", Path(tmp) / "sink.db"
            if n % 2 == 1:  # alternate the order, so that neither always runs on a warmer machine
                sink_runs.append(write_sink(sink_db, prepared))
                base_runs.append(write_baseline(base_db, prepared))
            else:
                base_runs.append(write_baseline(base_db, prepared))
                with SelfProfile(profile if n == 0 else None):
                    sink_runs.append(write_sink(sink_db, prepared))
            if n == 0:
                _check_rows(base_db, prepared)
                _check_rows(sink_db, prepared)
                rewrite_s = write_sink(sink_db, prepared)
                _check_rows(sink_db, prepared)
    row_building_s = time_row_building(prepared)
    postgres, postgres_skipped = (_on_postgres(prepared) if config.postgres else (None, "disabled"))
    live: LiveResult | None = None
    skipped: str | None = None
    live_profile = config.profile_dir / "sink-live.collapsed.txt" if config.profile_dir else None
    if bootstrap is None:
        skipped = "no broker"
    elif config.live_executions is None:
        skipped = "disabled (live_executions=None)"
    else:
        live = asyncio.run(run_live(bootstrap, config, workdir, live_profile))
    result = SinkBenchResult(
        config=config, executions=prepared.executions, steps=prepared.steps, samples=prepared.samples,
        rollups=prepared.rollups, batches=len(prepared.batches), prepare_s=prepare_s,
        baseline=WriteResult(prepared.rows, prepared.records, tuple(base_runs)),
        sink=WriteResult(prepared.rows, prepared.records, tuple(sink_runs)),
        rewrite=WriteResult(prepared.rows, prepared.records, (rewrite_s,)),
        row_building_s=row_building_s, live=live, live_skipped=skipped,
        postgres=postgres, postgres_skipped=postgres_skipped,
        profile=profile, live_profile=live_profile if live is not None else None,
    )
    for path in (profile, result.live_profile):
        if path is not None and path.exists():
            path.with_name(path.name.replace(".collapsed.txt", ".top.txt")).write_text(summarize(path).text())
    return result


def _on_postgres(prepared: Prepared) -> tuple[WriteResult | None, str | None]:
    """``write_batch`` of every batch into a fresh PostgreSQL (started here, stopped after)."""
    from tests.pg import start_postgres  # the test suite's server: Debian's binaries, a temporary cluster

    try:
        server = start_postgres()
    except RuntimeError as exc:
        return None, str(exc).splitlines()[0]
    try:
        url = server.fresh()
        seconds = write_sink(url, prepared)
        _check_rows(url, prepared)
        return WriteResult(prepared.rows, prepared.records, (seconds,)), None
    finally:
        server.stop()


FULL = SinkBenchConfig(runs=2)
QUICK = SinkBenchConfig(executions=5_000, samples=50_000, template_executions=500, runs=3, live_executions=300)


def config_for(ctx: BenchContext) -> SinkBenchConfig:
    """Full (100k executions, 1M samples; live 5,000 simulated executions), quick (5k / 50k;
    live 300), or ``--events N``: N executions and 10 N samples, live N / 20 executions."""
    if ctx.events is not None:
        return SinkBenchConfig(executions=ctx.events, samples=10 * ctx.events,
                               template_executions=min(2_000, max(10, ctx.events)),
                               live_executions=max(10, ctx.events // 20), profile_dir=ctx.profile_dir)
    base = QUICK if ctx.quick else FULL
    return SinkBenchConfig(**{**{f: getattr(base, f) for f in SinkBenchConfig.__dataclass_fields__},
                              "profile_dir": ctx.profile_dir})


def run(ctx: BenchContext) -> Report:
    """The registered entry point."""
    return run_sink_bench(ctx.bootstrap, config_for(ctx), ctx.workdir / "sink").report()


BENCHMARK = Benchmark("sink", "Sink write throughput", run)
