"""End to end: from an engine's ``publish`` to the row a reader sees in SQLite, through the real
``axmon worker`` and ``axmon sink`` processes, next to Kafka's own round trip in the same run.

1. Fresh contract topics (a unique prefix); ``axmon worker`` and ``axmon sink`` (their default
   batches, ``--batch-ms 20``) are started as child processes (:class:`processor.ops.children.AxmonChild`), and a
   :class:`DbWatcher` thread polls the sink's database read-only (WAL: readers never block the
   writer) every ``poll_interval_s``, stamping when it first sees each ``performance_metrics``
   row and each new ``last_event_at`` of each execution (its compact row) it awaits an event
   of, probing only what is in flight by the tables' unique indexes. A few
   warm-up events are published and waited for: the pipeline is up.
2. **Maximum throughput**, measured here: a burst of simulated events (lifecycle events and
   metric samples as :func:`producers.simulator.generate_scenario` mixes them, event time now)
   published through the SDK as fast as it goes; *visible* when every one of them is in the
   database, *settled* when, after that, the worker has committed every topic it consumes and
   the sink has stored every record of its topics (the derived work the burst caused is done
   too). The maximum is events / (first send -> settled).
3. **Fixed load**: ``load_fraction`` of that maximum, for ``duration_s``, from a paced producer
   (event i published at ``t0 + i / rate``, its event time that scheduled moment); per event
   the latency from the wall time of its ``publish`` call to the first poll that sees it: a
   metric sample by its id in ``performance_metrics``, a lifecycle event when its execution's
   row has ``last_event_at`` >= its event time (event times are made strictly increasing per
   execution, so that is exactly "this event or a later one of the execution is applied").
   A :class:`StateTap` stamps the worker's ``execution-state`` records the same way, which
   splits a lifecycle event's latency into the worker's part and the sink's.
4. Worker and sink peak RSS (``VmHWM``) and CPU time are read, and both are stopped.
5. **Baseline**: the same encoded events, at the same rate, keyed and routed the same, through
   a plain ``AIOKafkaProducer`` (the SDK's settings: acks=all, idempotent, lz4, 5 ms linger)
   to fresh topics and back through a plain ``AIOKafkaConsumer``; latency from ``send`` to the
   ``getmany`` that returned it (matched by partition and offset).
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import itertools
import math
import os
import shlex
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

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
from bench.profiling import start_profiler, stop_profiler, summarize
from bench.worker import GroupProbe
from processor.ops.children import AxmonChild
from processor.ops.settle import sink_topics, stored_sink_offsets
from processor.store.db import DatabaseError, open_read_only
from processor.store.series import event_id as stored_event_id
from producers import AxmonProducer, ProducerConfig
from producers.client import route
from producers.simulator import ScenarioConfig, generate_scenario
from schemas.codec import encode_event
from schemas.events import Event, LifecycleEvent, MetricRecorded
from schemas.topics import Topics

KINDS = ("lifecycle", "metric")
_EVENTS_PER_EXECUTION = 22.0
"""A first guess of events (lifecycle + samples) per simulated execution."""


@dataclass(frozen=True, slots=True)
class E2EBenchConfig:
    full_topics_events: int = 30_000
    """Events published before worker and sink start: the pipeline's maximum from full topics
    (0: not measured; the fixed load is then a fraction of the burst's)."""
    burst_events: int = 30_000
    """Events of the burst that measures the maximum throughput (enough that the worker's
    one-second commits and the start of the burst weigh little)."""
    duration_s: float = 20.0
    """How long the fixed load is offered."""
    load_fraction: float = 0.5
    """The fixed load, as a fraction of the measured maximum."""
    offered_rate: float | None = None
    """Offer this many events/s instead of ``load_fraction`` of the maximum."""
    baseline_s: float = 10.0
    """How long the baseline offers the same rate (at most ``duration_s``)."""
    partitions: int = 4
    sink_batch_ms: int = 20
    """``axmon sink --batch-ms``: a transaction at least this often while records arrive."""
    poll_interval_s: float = 0.025
    warmup_events: int = 60
    tenants: int = 5
    seed: int = 23
    startup_timeout_s: float = 120.0
    """Launch -> the warm-up events visible."""
    burst_timeout_s: float | None = None
    """Default ``60 + burst_events / 100`` s."""
    drain_timeout_s: float = 30.0
    """After the last paced send, how long to wait for the stragglers."""
    settle_timeout_s: float = 30.0
    profile_dir: Path | None = None
    worker_args: tuple[str, ...] = ()
    """More ``axmon worker`` flags (from :data:`WORKER_ARGS_ENV`), e.g. ``--batch-ms 10``."""
    timeline: Path | None = None
    """Where to write every fixed-load event's latencies (from :data:`TIMELINE_ENV`)."""

    @property
    def burst_deadline_s(self) -> float:
        return self.burst_timeout_s if self.burst_timeout_s is not None else 60.0 + self.burst_events / 100


FULL = E2EBenchConfig()
QUICK = E2EBenchConfig(full_topics_events=2_000, burst_events=2_000, duration_s=5.0, baseline_s=5.0)
WINDOW_THIRDS = 3
"""The fixed load's latencies are also compared between its first and last third (by send
time): a load the pipeline sustains has them alike, one it does not has them growing."""


# -- events --------------------------------------------------------------------------------------


def kind_of(event: Event) -> str:
    return "metric" if isinstance(event, MetricRecorded) else "lifecycle"


def simulated(n: int, seed: int, tenants: int) -> list[Event]:
    """The first ``n`` events (event-time order) of a simulation just big enough: lifecycle
    events and metric samples mixed as the simulator mixes them."""
    executions = max(1, math.ceil(n / _EVENTS_PER_EXECUTION * 1.05))
    for _ in range(8):
        # executions start ~0.6 s apart in event time: a few are in flight at any moment
        events = generate_scenario(ScenarioConfig(seed=seed, tenants=tenants, executions=executions,
                                                  start_ms=int(time.time() * 1000), span_ms=executions * 600))
        if len(events) >= n:
            return events[:n]
        executions = math.ceil(executions * n / max(1, len(events)) * 1.05) + 1
    raise BenchError(f"could not simulate {n} events")


def retimed(events: Sequence[Event], base_ms: float, events_per_s: float | None) -> list[Event]:
    """The events with event time ``base_ms + i / events_per_s`` (all ``base_ms`` when
    ``None``), made strictly increasing per execution (+1 ms where two would be equal)."""
    last: dict[str, int] = {}
    out: list[Event] = []
    for i, event in enumerate(events):
        at = int(base_ms + (i * 1000 / events_per_s if events_per_s else 0))
        if isinstance(event, LifecycleEvent):
            at = max(at, last.get(event.execution_id, -1) + 1)
            last[event.execution_id] = at
        out.append(dataclasses.replace(event, occurred_at=at))
    return out


@dataclass(frozen=True, slots=True)
class Sent:
    """What a phase published: the events and the ``now()`` of each ``publish`` call."""

    events: tuple[Event, ...]
    sent_at: tuple[float, ...]

    @property
    def began(self) -> float:
        return self.sent_at[0] if self.sent_at else 0.0

    @property
    def send_rate(self) -> float:
        return rate(len(self.sent_at) - 1, self.sent_at[-1] - self.sent_at[0]) if len(self.sent_at) > 1 else 0.0


async def publish_paced(producer: AxmonProducer, events: Sequence[Event], t0: float, events_per_s: float | None,
                        watcher: DbWatcher | None = None) -> Sent:
    """Event i published at ``t0 + i / events_per_s`` (as fast as possible when ``None``);
    every acknowledgement awaited at the end. ``watcher`` is told of each event before it is
    published."""
    sent_at: list[float] = []
    for i, event in enumerate(events):
        if events_per_s:
            wait = t0 + i / events_per_s - now()
            if wait > 0.0005:
                await asyncio.sleep(wait)
        sent_at.append(now())
        if watcher is not None:
            watcher.expect(event)
        await producer.publish(event)
    await producer.flush()
    return Sent(tuple(events), tuple(sent_at))


# -- watching the database -----------------------------------------------------------------------


def observe(executions: dict[str, list[tuple[int, float]]], execution_id: str, last_event_at: int, stamp: float) -> None:
    """Remember that ``execution_id`` showed ``last_event_at`` at ``stamp``, if that is new."""
    seen = executions.get(execution_id)
    if seen is None:
        executions[execution_id] = [(last_event_at, stamp)]
    elif last_event_at > seen[-1][0]:
        seen.append((last_event_at, stamp))


def applied_at(executions: dict[str, list[tuple[int, float]]], event: LifecycleEvent) -> float | None:
    """When the execution first showed ``last_event_at`` >= the event's time (``None``: never)."""
    seen = executions.get(event.execution_id)
    if not seen:
        return None
    i = bisect.bisect_left(seen, event.occurred_at, key=lambda item: item[0])
    return seen[i][1] if i < len(seen) else None


class StateTap:
    """A plain consumer of ``execution-state`` (what the worker publishes, before the sink):
    when each new ``last_event_at`` of each execution arrived, to split a lifecycle event's
    latency into the worker's part and the sink's."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.executions: dict[str, list[tuple[int, float]]] = {}
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                          auto_offset_reset="earliest", client_id="axmon-bench-e2e-tap")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign(self.tps)
        await self._consumer.seek_to_beginning(*self.tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stopping:
            fetched = await self._consumer.getmany(timeout_ms=50)
            stamp = now()
            for messages in fetched.values():
                for m in messages:
                    if m.value:
                        view = orjson.loads(m.value)
                        observe(self.executions, view["id"], int(view["last_event_at"]), stamp)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await self._task
        await self._consumer.stop()


class DbWatcher(threading.Thread):
    """Polls the sink's database read-only every ``interval_s`` and stamps (with ``now()``
    taken just before each poll's queries) when it first saw each expected sample and each new
    ``last_event_at`` of each execution it awaits an event of. A poll probes, by their unique
    indexes, at most ``probe_limit`` of the oldest expected samples and as many of the oldest
    awaited executions: what is in flight, not the whole database (so the watcher's own work,
    which shares the cores with the pipeline, does not grow with the rows stored). Beyond that
    limit (a backlog of full topics), later events are stamped late, never early. Until the
    first execution row is seen, a poll also asks whether there is one (:meth:`first_seen`)."""

    probe_limit = 4000

    def __init__(self, db: Path, interval_s: float) -> None:
        super().__init__(name="axmon-bench-db-watcher", daemon=True)
        self.db = db
        self.interval_s = interval_s
        self.samples: dict[str, float] = {}
        """performance_metrics id -> first seen."""
        self.executions: dict[str, list[tuple[int, float]]] = {}
        """execution id -> every (last_event_at, first seen) observed while awaited, ascending."""
        self.polls = 0
        self.gaps: list[float] = []
        """Seconds between the starts of consecutive polls."""
        self.query_s = 0.0
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._pending: dict[str | bytes, str] = {}
        """Samples expected and not seen yet: their id as the samples table stores it -> the id."""
        self._awaited: dict[str | bytes, tuple[str, int]] = {}
        """Executions with an expected event not seen yet: the id as stored -> (the id, the
        latest such event's time)."""
        self._first_row: float | None = None
        self._data_version: int | None = None

    def stop(self) -> None:
        self._stopping.set()
        self.join(10)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported to the benchmark by unseen()
            self.error = exc

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        previous: float | None = None
        try:
            while not self._stopping.is_set():
                began = now()
                if conn is None:
                    try:
                        conn = cast(sqlite3.Connection, open_read_only(self.db))  # a file
                        conn.row_factory = None
                    except DatabaseError:  # the sink has not created it yet
                        time.sleep(self.interval_s)
                        continue
                if previous is not None:
                    self.gaps.append(began - previous)
                previous = began
                try:
                    self.poll(conn, began)
                except sqlite3.OperationalError as exc:
                    if "no such table" not in str(exc):
                        raise
                    conn.close()  # the sink has created the file, not its tables yet
                    conn = None
                    time.sleep(self.interval_s)
                    continue
                self.query_s += now() - began
                self.polls += 1
                rest = began + self.interval_s - now()
                if rest > 0:
                    self._stopping.wait(rest)
        finally:
            if conn is not None:
                conn.close()

    def poll(self, conn: sqlite3.Connection, stamp: float) -> None:
        """One poll of ``conn`` (a read-only connection to the sink's database) at ``stamp``."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return  # nothing committed since the last poll
        self._data_version = version
        with self._lock:
            samples = list(itertools.islice(self._pending, self.probe_limit))
            executions = list(itertools.islice(self._awaited, self.probe_limit))
        found = _probed(conn, "SELECT id FROM samples WHERE id IN ({})", samples)
        rows = _probed(conn, "SELECT id, last_event_at FROM executions WHERE id IN ({})", executions)
        if self._first_row is None and (rows or conn.execute("SELECT 1 FROM executions LIMIT 1").fetchone()):
            self._first_row = stamp
        with self._lock:
            for (stored,) in found:
                sample_id = self._pending.pop(stored, None)
                if sample_id is not None:
                    self.samples.setdefault(sample_id, stamp)
            for stored, last_event_at in rows:
                execution_id, latest = self._awaited[stored]
                observe(self.executions, execution_id, last_event_at, stamp)
                if last_event_at >= latest:
                    del self._awaited[stored]

    def expect(self, event: Event) -> None:
        """Watch for ``event`` (before it is published): a sample by its id (raw samples have no
        order in the compact layout's ``samples`` table, so the watcher probes the ids it
        expects by their unique index), a lifecycle event by its execution's row."""
        with self._lock:
            if isinstance(event, MetricRecorded):
                if event.event_id not in self.samples:
                    self._pending.setdefault(stored_event_id(event.event_id), event.event_id)
            elif isinstance(event, LifecycleEvent):
                stored = stored_event_id(event.execution_id)
                latest = self._awaited.get(stored, (event.execution_id, event.occurred_at))[1]
                self._awaited[stored] = (event.execution_id, max(latest, event.occurred_at))

    def first_seen(self) -> float | None:
        """When the first execution row was seen (the worker's output through the sink: the sink
        stores raw samples before the worker has started), else the first sample (``None``:
        neither yet)."""
        with self._lock:
            return self._first_row if self._first_row is not None else min(self.samples.values(), default=None)

    def visible_at(self, event: Event) -> float | None:
        """When the event was first seen in the database (``None``: not yet)."""
        with self._lock:
            if isinstance(event, MetricRecorded):
                return self.samples.get(event.event_id)
            assert isinstance(event, LifecycleEvent)
            return applied_at(self.executions, event)

    def unseen(self, events: Sequence[Event]) -> list[Event]:
        """Those of ``events`` not visible yet."""
        if self.error is not None:
            raise BenchError(f"polling the database failed: {self.error!r}")
        with self._lock:
            samples = self.samples
            latest = {k: v[-1][0] for k, v in self.executions.items()}
        return [e for e in events if not (e.event_id in samples if isinstance(e, MetricRecorded) else
                                          isinstance(e, LifecycleEvent) and latest.get(e.execution_id, -1) >= e.occurred_at)]


def _probed(conn: sqlite3.Connection, sql: str, keys: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (its ``IN ({})`` filled with ``keys``, 500 at a time)."""
    out: list[tuple[Any, ...]] = []
    for at in range(0, len(keys), 500):
        chunk = keys[at:at + 500]
        out += conn.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
    return out


# -- latencies -----------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least ``p`` % of the values at or below it."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))]


@dataclass(frozen=True, slots=True)
class Latencies:
    """Latencies in seconds, sorted, of ``matched`` of ``sent`` events."""

    sent: int
    values: tuple[float, ...]

    @classmethod
    def of(cls, sent: int, values: Sequence[float]) -> Latencies:
        return cls(sent, tuple(sorted(values)))

    @property
    def matched(self) -> int:
        return len(self.values)

    def ms(self, p: float) -> float:
        return percentile(self.values, p) * 1000

    @property
    def max_ms(self) -> float:
        return self.values[-1] * 1000 if self.values else 0.0


@dataclass(frozen=True, slots=True)
class Matched:
    by_kind: dict[str, Latencies]
    """Per kind, and ``all``."""
    thirds: tuple[Latencies, Latencies]
    """All kinds: the events sent in the first third, and in the last third."""
    worker_output: Latencies
    """Lifecycle events: to the worker's ``execution-state`` record (read by :class:`StateTap`)."""
    first_seen: float
    last_seen: float

    @property
    def delivered_rate(self) -> float:
        return rate(self.by_kind["all"].matched - 1, self.last_seen - self.first_seen)


def pipeline_latencies(sent: Sent, watcher: DbWatcher, tap: StateTap, timeline: Path | None = None) -> Matched:
    """Match every sent event with when it was first seen in the database (and write the
    ``timeline`` of :func:`write_timeline` when one is given)."""
    by_kind: dict[str, list[float]] = {k: [] for k in KINDS}
    counts = dict.fromkeys(KINDS, 0)
    seen_at: list[float] = []
    n = len(sent.events)
    third = max(1, n // WINDOW_THIRDS)
    first: list[float] = []
    last: list[float] = []
    worker: list[float] = []
    for i, (event, at) in enumerate(zip(sent.events, sent.sent_at)):
        kind = kind_of(event)
        counts[kind] += 1
        if isinstance(event, LifecycleEvent):
            published = applied_at(tap.executions, event)
            if published is not None:
                worker.append(published - at)
        seen = watcher.visible_at(event)
        if seen is None:
            continue
        by_kind[kind].append(seen - at)
        seen_at.append(seen)
        if i < third:
            first.append(seen - at)
        if i >= n - third:
            last.append(seen - at)
    if timeline is not None:
        write_timeline(timeline, sent, watcher, tap)
    out = {k: Latencies.of(counts[k], by_kind[k]) for k in KINDS}
    out["all"] = Latencies.of(n, [v for k in KINDS for v in by_kind[k]])
    return Matched(out, (Latencies.of(min(n, third), first), Latencies.of(min(n, third), last)),
                   Latencies.of(counts["lifecycle"], worker), min(seen_at, default=0.0), max(seen_at, default=0.0))


def write_timeline(path: Path, sent: Sent, watcher: DbWatcher, tap: StateTap) -> None:
    """One JSON row per event of the fixed load, in send order: ``[s since the first send, kind,
    s to visible in the database or null, s to its execution's state published by the worker
    (lifecycle) or null]`` - to see *when* in the load the latency rose."""
    rows = []
    for event, at in zip(sent.events, sent.sent_at):
        seen = watcher.visible_at(event)
        published = applied_at(tap.executions, event) if isinstance(event, LifecycleEvent) else None
        rows.append([round(at - sent.began, 6), kind_of(event), None if seen is None else round(seen - at, 6),
                     None if published is None else round(published - at, 6)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(rows))


# -- the pipeline ----------------------------------------------------------------------------------


class Backlog:
    """Is the pipeline idle? The worker has committed every topic it consumes, and the sink's
    database holds every record of the topics the sink reads."""

    def __init__(self, bootstrap: str, topics: Topics, partitions: int, db: Path) -> None:
        self.probe = GroupProbe(bootstrap, f"{topics.prefix}worker")
        worker_topics = [topics.workflow_events, topics.metrics, topics.stats_changes]
        self.worker_tps = [TopicPartition(t, p) for t in worker_topics for p in range(partitions)]
        self.sink_tps = [TopicPartition(t, p) for t in sink_topics(topics) for p in range(partitions)]
        self.db = db

    async def start(self) -> None:
        await self.probe.start()

    async def stop(self) -> None:
        await self.probe.stop()

    async def records(self) -> int:
        """Records not yet done (worker: not committed; sink: not stored)."""
        ends = await self.probe.end_offsets(list(dict.fromkeys(self.worker_tps + self.sink_tps)))
        committed = await self.probe.committed()
        stored = stored_sink_offsets(self.db)
        return (sum(max(0, ends[tp] - committed.get(tp, 0)) for tp in self.worker_tps)
                + sum(max(0, ends[tp] - stored.get((tp.topic, tp.partition), 0)) for tp in self.sink_tps))


@dataclass(frozen=True, slots=True)
class FullTopicsResult:
    """The pipeline started on topics that already hold every event."""
    events: int
    produce_s: float
    """First send -> the last acknowledgement (before worker and sink were launched)."""
    first_work_s: float
    """Launch -> the first execution row seen in the database (process starts, imports, group
    joins: both worker and sink at work)."""
    visible_s: float
    """Launch -> every event visible."""
    settled_s: float
    """Launch -> the pipeline idle (worker committed everything, sink stored everything)."""

    @property
    def settled_per_s(self) -> float:
        """Events / (first execution row seen -> settled): the pipeline's capacity, its startup left out."""
        return rate(self.events, self.settled_s - self.first_work_s)

    @property
    def settled_from_launch_per_s(self) -> float:
        return rate(self.events, self.settled_s)

    @property
    def visible_per_s(self) -> float:
        return rate(self.events, self.visible_s - self.first_work_s)


@dataclass(frozen=True, slots=True)
class BurstResult:
    events: int
    produce_s: float
    """First send -> the last acknowledgement."""
    visible_s: float
    """First send -> every event of the burst visible."""
    settled_s: float
    """First send -> the pipeline idle again (worker committed, sink stored everything)."""

    @property
    def visible_per_s(self) -> float:
        return rate(self.events, self.visible_s)

    @property
    def settled_per_s(self) -> float:
        return rate(self.events, self.settled_s)


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    peak_rss_kib: int
    cpu_s: float
    exit_code: int | None


@dataclass(frozen=True, slots=True)
class BaselineResult:
    latencies: Latencies
    offered_rate: float
    send_rate: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class E2EBenchResult:
    config: E2EBenchConfig
    startup_s: float
    """Launch of worker and sink -> the warm-up events visible (with full topics: the first row)."""
    full: FullTopicsResult | None
    burst: BurstResult
    offered_rate: float
    rate_source: str
    send_rate: float
    """Events/s the paced producer achieved (sent / first to last send)."""
    delivered_rate: float
    """Matched events / (first -> last matched event seen in the database)."""
    latencies: dict[str, Latencies]
    thirds: tuple[Latencies, Latencies]
    """All kinds, events sent in the first and in the last third of the fixed load."""
    worker_output: Latencies
    """Lifecycle events: send -> the worker's ``execution-state`` record read by a plain consumer."""
    drained: bool
    poll_mean_ms: float
    poll_max_gap_ms: float
    poll_query_ms: float
    worker: ProcessFigures
    sink: ProcessFigures
    baseline: BaselineResult
    notes: tuple[str, ...] = ()
    profiles: tuple[Path, ...] = field(default_factory=tuple)

    def _full_figures(self) -> list[Figure]:
        f = self.full
        if f is None:
            return []
        return [
            Figure("all", "full topics: max throughput (settled)", f.settled_per_s, "events/s"),
            Figure("all", "full topics: to visible", f.visible_per_s, "events/s"),
            Figure("all", "full topics: settled, from launch", f.settled_from_launch_per_s, "events/s"),
        ]

    def _full_notes(self) -> list[str]:
        f = self.full
        if f is None:
            return []
        return [(f"From full topics: {f.events:,} events published in {f.produce_s:.2f} s before worker and sink "
                 f"were launched; the first execution row was in the database {f.first_work_s:.2f} s after the launch, every "
                 f"event {f.visible_s:.2f} s after it, and the pipeline idle {f.settled_s:.2f} s after it: "
                 f"{f.settled_per_s:,.0f} events/s from that first row to idle, {f.settled_from_launch_per_s:,.0f}/s "
                 "from the launch (process start, imports and group joins included).")]

    def report(self) -> Report:
        lat, base = self.latencies, self.baseline.latencies
        figures: list[Figure] = []
        for case, values in (("lifecycle", lat["lifecycle"]), ("metric", lat["metric"]), ("all", lat["all"]),
                             ("lifecycle, to execution-state", self.worker_output),
                             ("baseline: Kafka round trip", base)):
            figures += [
                Figure(case, "events sent", values.sent, "events"),
                Figure(case, "events matched", values.matched, "events"),
                Figure(case, "latency p50", values.ms(50), "ms", 1),
                Figure(case, "latency p95", values.ms(95), "ms", 1),
                Figure(case, "latency p99", values.ms(99), "ms", 1),
                Figure(case, "latency max", values.max_ms, "ms", 1),
            ]
        figures += [
            Figure("all", "offered rate", self.offered_rate, "events/s"),
            Figure("all", "achieved send rate", self.send_rate, "events/s"),
            Figure("all", "delivered rate (to visible)", self.delivered_rate, "events/s"),
            Figure("baseline: Kafka round trip", "offered rate", self.baseline.offered_rate, "events/s"),
            Figure("baseline: Kafka round trip", "achieved send rate", self.baseline.send_rate, "events/s"),
            Figure("all", "p50 / baseline p50", lat["all"].ms(50) / base.ms(50) if base.ms(50) else 0.0, "x", 1),
            Figure("all", "latency p50, first third", self.thirds[0].ms(50), "ms", 1),
            Figure("all", "latency p50, last third", self.thirds[1].ms(50), "ms", 1),
            *self._full_figures(),
            Figure("all", "burst: max throughput (settled)", self.burst.settled_per_s, "events/s"),
            Figure("all", "burst: to visible", self.burst.visible_per_s, "events/s"),
            Figure("all", "polling interval (mean)", self.poll_mean_ms, "ms", 1),
            Figure("all", "polling gap (max)", self.poll_max_gap_ms, "ms", 1),
            Figure("all", "pipeline startup", self.startup_s, "s", 2),
            Figure("all", "worker peak RSS", self.worker.peak_rss_kib / 1024, "MiB", 1),
            Figure("all", "sink peak RSS", self.sink.peak_rss_kib / 1024, "MiB", 1),
        ]
        c = self.config
        b = self.burst
        first, last = self.thirds
        notes = [
            *self._full_notes(),
            (f"Fixed load's rate {self.rate_source}. Burst: a burst of {b.events:,} events published in {b.produce_s:.2f} s "
             f"was visible after {b.visible_s:.2f} s ({b.visible_per_s:,.0f}/s) and settled after {b.settled_s:.2f} s "
             f"({b.settled_per_s:,.0f}/s; the worker commits once a second, so settled is late by up to ~1 s)."),
            (f"Fixed load: {self.offered_rate:,.0f} events/s for {c.duration_s:g} s; {lat['all'].matched:,} of "
             f"{lat['all'].sent:,} events seen in the database"
             + ("" if self.drained else f" (the rest not within {c.drain_timeout_s:g} s after the last send)")
             + f"; delivered rate = matched / (first to last seen). Latency p50 / p99 of the events sent in the first "
             f"third {first.ms(50):,.0f} / {first.ms(99):,.0f} ms, in the last third {last.ms(50):,.0f} / "
             f"{last.ms(99):,.0f} ms (alike when the load is sustained)."),
            (f"Error bar: a latency is stamped at the first poll that sees the row, so it overstates the true one by "
             f"0 to one polling gap (mean {self.poll_mean_ms:.1f} ms, max {self.poll_max_gap_ms:.1f} ms; a poll's "
             f"queries took {self.poll_query_ms:.2f} ms on average): ~{self.poll_mean_ms / 2:.0f} ms on average."),
            (f"Worker: peak RSS {self.worker.peak_rss_kib / 1024:.1f} MiB, CPU {self.worker.cpu_s:.1f} s, exit code "
             f"after SIGTERM {self.worker.exit_code}; sink: peak RSS {self.sink.peak_rss_kib / 1024:.1f} MiB, CPU "
             f"{self.sink.cpu_s:.1f} s, exit code {self.sink.exit_code} (peaks over the whole run, burst included)."),
            (f"Baseline: {base.matched:,} of {base.sent:,} records consumed, offered for "
             f"{self.baseline.duration_s:.1f} s with worker and sink stopped."),
            *self.notes,
        ]
        for path in self.profiles:
            if path.exists():
                hot = "; ".join(f"{e.function} {e.self_share:.0%}" for e in summarize(path, top=8).by_self)
                notes.append(f"{path.name}: profiled with py-spy (figures include its overhead); most self time: {hot}")
        return Report(BENCHMARK.name, BENCHMARK.title, METHOD.format(full=c.full_topics_events,
            partitions=c.partitions, batch_ms=c.sink_batch_ms, tenants=c.tenants, burst=c.burst_events,
            fraction=c.load_fraction, duration=c.duration_s, poll=c.poll_interval_s * 1000, limit=DbWatcher.probe_limit,
            baseline=min(c.baseline_s, c.duration_s)), tuple(figures), tuple(notes))


METHOD = """\
On fresh topics ({partitions} partitions), `axmon worker` and `axmon sink --batch-ms {batch_ms}`
(a transaction at least every {batch_ms} ms while records arrive, the default; the worker's
batches also close within its default 20 ms)
run as child processes; a thread of the benchmark polls the sink's database read-only (WAL:
readers do not block the writer) every {poll:.0f} ms and stamps when it first sees each
sample and each new `last_event_at` of each execution row; it is told of each event before its
`publish` and probes only what it still awaits (samples by their unique ids, executions by
theirs, at most {limit:,} of the oldest of each a poll), so its cost follows what is in flight,
not the rows stored. The traffic is
the simulator's mix ({tenants} tenants: lifecycle events and `api.request.duration` / system
metric samples) with event time = now, published through the SDK (acks=all, lz4, 5 ms linger).
**Maximum throughput** is measured in the same run, not taken from the worker benchmark, twice.
*From full topics*: {full:,} events are published before worker and sink are launched; the
maximum is those events divided by the time from the first execution row seen in the database
(both processes at work) until the pipeline is idle (the worker has committed every topic it consumes, the sink has stored
everything; so the derived work the events caused counts too). *Burst*: with the pipeline up,
{burst:,} events as fast as the SDK publishes them (so the producer shares the cores), divided
by the time from the first send until the pipeline is idle again.
**Fixed load**: {fraction:g} x the maximum from full topics (of the burst's when that is not
measured) for {duration:g} s from a paced producer (event i
published at t0 + i / rate, with that moment as its event time); per event, latency from the
wall time of its `publish` call to the first poll that sees it: a metric sample by its id in
`performance_metrics` (the sink reads raw samples straight from `metrics`), a lifecycle event
when its execution's row has `last_event_at` >= its event time (through the worker's
`execution-state`; event times strictly increase per execution). Percentiles are nearest-rank.
Each latency is late by 0 to one polling gap (stated with the figures). *To execution-state*:
a plain consumer in the benchmark reads the worker's `execution-state` records as they come,
splitting a lifecycle event's latency into the worker's part and the sink's. *First / last
third*: p50 of the events sent in the first and the last third of the load: alike when the
pipeline sustains it, growing when a backlog builds up.
**Baseline**: the same encoded events at the same rate for {baseline:g} s, keyed and routed
alike, through a plain `AIOKafkaProducer` with the SDK's settings to fresh topics and back
through a plain `AIOKafkaConsumer` (`getmany` in a loop), after worker and sink have stopped;
latency from `send` to the `getmany` that returned the record (matched by partition and offset).
Peak RSS is `VmHWM` of the worker and sink processes, read just before they are stopped.
Broker, worker, sink and benchmark share the machine's cores."""


# -- the run -------------------------------------------------------------------------------------


def _check(children: Sequence[AxmonChild]) -> None:
    for child in children:
        if not child.alive():
            code = None if child.proc is None else child.proc.returncode
            raise BenchError(f"the {child.name} exited with code {code}:\n{child.tail(30)}")
        if child.restarts():  # a crash it recovered from: its figures would measure the recovery
            raise BenchError(f"the {child.name} restarted itself:\n{child.tail(30)}")


async def wait_visible(watcher: DbWatcher, events: Sequence[Event], timeout_s: float, children: Sequence[AxmonChild],
                       what: str, *, fail: bool = True) -> float | None:
    """Wait until every event is visible; returns the ``now()`` it was noticed (``None``
    after ``timeout_s`` unless ``fail``)."""
    deadline = now() + timeout_s
    unseen = list(events)
    while True:
        unseen = watcher.unseen(unseen)  # fewer each time: the wait costs what is still in flight
        if not unseen:
            return now()
        _check(children)
        if now() > deadline:
            if fail:
                raise BenchError(f"{what}: {len(events) - len(unseen)} of {len(events)} events visible after "
                                 f"{timeout_s:.0f} s")
            return None
        await asyncio.sleep(0.05)


async def wait_settled(backlog: Backlog, timeout_s: float, children: Sequence[AxmonChild]) -> float | None:
    """The ``now()`` at which the pipeline was first seen idle (``None`` after ``timeout_s``)."""
    deadline = now() + timeout_s
    while now() < deadline:
        _check(children)
        checked = now()
        if await backlog.records() == 0:
            return checked
        await asyncio.sleep(0.2)
    return None


def _sdk(bootstrap: str, topics: Topics) -> AxmonProducer:
    return AxmonProducer(config=ProducerConfig(bootstrap=bootstrap, topics=topics, client_id="axmon-bench-e2e"))


@dataclass(frozen=True, slots=True)
class PipelineResult:
    startup_s: float
    full: FullTopicsResult | None
    burst: BurstResult
    offered_rate: float
    rate_source: str
    steady: Sent
    matched: Matched
    drained: bool
    watcher: DbWatcher
    worker: ProcessFigures
    sink: ProcessFigures
    notes: tuple[str, ...]
    profiles: tuple[Path, ...]


async def run_pipeline(bootstrap: str, topics: Topics, config: E2EBenchConfig, workdir: Path) -> PipelineResult:
    """Worker, sink and watcher up; burst; fixed load; the figures of both."""
    db = workdir / "e2e.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    common = ["--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--partitions", str(config.partitions)]
    env = subprocess_env()
    worker = AxmonChild("worker", ["worker", *common, *config.worker_args], workdir, env)
    sink = AxmonChild("sink", ["sink", *common, "--db", str(db), "--batch-ms", str(config.sink_batch_ms)], workdir, env)
    children = (worker, sink)
    notes: list[str] = []
    watcher = DbWatcher(db, config.poll_interval_s)
    tap = StateTap(bootstrap, topics.execution_state, config.partitions)
    backlog = Backlog(bootstrap, topics, config.partitions, db)
    spies: list[Any] = []
    profiles: list[Path] = []
    full_events: list[Event] = []
    full_produce_s = 0.0
    if config.full_topics_events:
        full_events = retimed(simulated(config.full_topics_events, config.seed + 4, config.tenants), time.time() * 1000, None)
        async with _sdk(bootstrap, topics) as producer:
            sent = await publish_paced(producer, full_events, now(), None, watcher)
        full_produce_s = now() - sent.began
    full: FullTopicsResult | None = None
    launched = now()
    worker.start()
    sink.start()
    try:
        if config.profile_dir is not None:
            for child in children:
                assert child.proc is not None
                out = config.profile_dir / f"e2e-{child.name}.collapsed.txt"
                spies.append(start_profiler(child.proc.pid, out))
                profiles.append(out)
        watcher.start()
        await backlog.start()
        await tap.start()
        if full_events:
            visible_at = await wait_visible(watcher, full_events, config.burst_deadline_s, children, "full topics")
            assert visible_at is not None
            settled_at = await wait_settled(backlog, config.burst_deadline_s, children)
            if settled_at is None:
                raise BenchError(f"the pipeline did not settle within {config.burst_deadline_s:.0f} s on full topics")
            first_at = watcher.first_seen()
            assert first_at is not None
            full = FullTopicsResult(len(full_events), full_produce_s, first_at - launched, visible_at - launched,
                                    settled_at - launched)
        async with _sdk(bootstrap, topics) as producer:
            # warm-up: the whole pipeline answers
            warm = retimed(simulated(config.warmup_events, config.seed + 1, config.tenants), time.time() * 1000, None)
            await publish_paced(producer, warm, now(), None, watcher)
            ready = await wait_visible(watcher, warm, config.startup_timeout_s, children, "warm-up")
            assert ready is not None
            startup_s = ready - launched if full is None else full.first_work_s
            if await wait_settled(backlog, config.settle_timeout_s, children) is None:
                notes.append("The pipeline did not settle after the warm-up within "
                              f"{config.settle_timeout_s:g} s.")

            # the maximum: a burst
            load_at_burst = _load()
            burst_events = retimed(simulated(config.burst_events, config.seed + 2, config.tenants), time.time() * 1000, None)
            burst = await publish_paced(producer, burst_events, now(), None, watcher)
            produced = now()
            visible = await wait_visible(watcher, burst_events, config.burst_deadline_s, children, "burst")
            assert visible is not None
            settled = await wait_settled(backlog, config.burst_deadline_s, children)
            if settled is None:
                raise BenchError(f"the pipeline did not settle within {config.burst_deadline_s:.0f} s after the burst")
            result = BurstResult(len(burst_events), produced - burst.began, visible - burst.began, settled - burst.began)
            if config.offered_rate is not None:
                offered, source = config.offered_rate, f"not used (the rate was given: {config.offered_rate:,.0f}/s)"
            elif full is not None:
                offered, source = config.load_fraction * full.settled_per_s, "measured in this run, from full topics"
            else:
                offered, source = config.load_fraction * result.settled_per_s, "measured in this run, by the burst"
            if offered <= 0:
                raise BenchError("the burst gave no throughput to offer a fraction of")

            # the fixed load
            n = max(1, int(offered * config.duration_s))
            plan = simulated(n, config.seed + 3, config.tenants)
            lead_s = 0.2
            t0 = now() + lead_s
            steady_events = retimed(plan, (time.time() + (t0 - now())) * 1000, offered)
            steady = await publish_paced(producer, steady_events, t0, offered, watcher)
            last_send = steady.sent_at[-1]
            drained = await wait_visible(watcher, steady_events, config.drain_timeout_s, children, "fixed load",
                                         fail=False) is not None
            notes.append(f"Load average (1 min) of the machine: {load_at_burst:.2f} at the burst, {_load():.2f} at "
                         "the end of the fixed load (other work on the machine moves both the maximum and the "
                         "latencies).")
            if not drained:
                notes.append(f"Not every event of the fixed load was visible {config.drain_timeout_s:g} s after the "
                             f"last send ({last_send - steady.began:.1f} s after the first).")
        worker_fig = ProcessFigures(peak_rss_kib(_pid(worker)), cpu_seconds(_pid(worker)), None)
        sink_fig = ProcessFigures(peak_rss_kib(_pid(sink)), cpu_seconds(_pid(sink)), None)
    finally:
        watcher.stop()
        await tap.stop()
        await backlog.stop()
        codes = [await asyncio.to_thread(child.stop) for child in children]
        for spy in spies:
            stop_profiler(spy)
    return PipelineResult(
        startup_s, full, result, offered, source, steady, pipeline_latencies(steady, watcher, tap, config.timeline), drained, watcher,
        dataclasses.replace(worker_fig, exit_code=codes[0]), dataclasses.replace(sink_fig, exit_code=codes[1]),
        tuple(notes), tuple(profiles),
    )


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def _pid(child: AxmonChild) -> int:
    assert child.proc is not None
    return child.proc.pid


# -- the baseline ----------------------------------------------------------------------------------


async def run_baseline(bootstrap: str, topics: Topics, partitions: int, events: Sequence[Event], events_per_s: float,
                       timeout_s: float) -> BaselineResult:
    """``events`` (encoded, routed and keyed as the SDK does) at ``events_per_s`` through a
    plain producer and back through a plain consumer."""
    records = [(*route(e, topics), encode_event(e)) for e in events]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                client_id="axmon-bench-e2e-baseline")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="axmon-bench-e2e-baseline", acks="all",
                                enable_idempotence=True, compression_type="lz4", linger_ms=5,
                                max_batch_size=256 * 1024, request_timeout_ms=30_000)
    await consumer.start()
    await producer.start()
    received: dict[tuple[str, int, int], float] = {}
    stop = asyncio.Event()

    async def consume() -> None:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=50)
            stamp = now()
            for tp, messages in fetched.items():
                for m in messages:
                    received[(tp.topic, tp.partition, m.offset)] = stamp

    try:
        tps = [TopicPartition(t, p) for t in topics.sources for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for tp in tps:
            await consumer.position(tp)
        reader = asyncio.create_task(consume())
        sent_at: list[float] = []
        futures = []
        t0 = now() + 0.2
        for i, (topic, key, value) in enumerate(records):
            wait = t0 + i / events_per_s - now()
            if wait > 0.0005:
                await asyncio.sleep(wait)
            sent_at.append(now())
            futures.append(await producer.send(topic, value, key=key))
        metas = await asyncio.gather(*futures)
        deadline = now() + timeout_s
        while len(received) < len(records) and now() < deadline and not reader.done():
            await asyncio.sleep(0.05)
        stop.set()
        await reader
    finally:
        await producer.stop()
        await consumer.stop()
    latencies = []
    for at, meta in zip(sent_at, metas):
        seen = received.get((meta.topic, meta.partition, meta.offset))
        if seen is not None:
            latencies.append(seen - at)
    span = sent_at[-1] - sent_at[0] if len(sent_at) > 1 else 0.0
    return BaselineResult(Latencies.of(len(records), latencies), events_per_s, rate(len(sent_at) - 1, span),
                          len(records) / events_per_s)


# -- the whole benchmark ---------------------------------------------------------------------------


async def run_e2e_bench(bootstrap: str, config: E2EBenchConfig, workdir: Path) -> E2EBenchResult:
    """The pipeline, then the baseline, on fresh topics (deleted afterwards)."""
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = unique_prefix("e2e")
    try:
        topics = await create_contract_topics(bootstrap, prefix, config.partitions)
        base_topics = await create_contract_topics(bootstrap, f"{prefix}baseline.", config.partitions)
        p = await run_pipeline(bootstrap, topics, config, workdir)
        count = max(1, min(len(p.steady.events), int(p.offered_rate * min(config.baseline_s, config.duration_s))))
        baseline = await run_baseline(bootstrap, base_topics, config.partitions, p.steady.events[:count],
                                      p.offered_rate, config.drain_timeout_s)
    finally:
        await delete_topics_with_prefix(bootstrap, prefix)
    gaps = p.watcher.gaps
    return E2EBenchResult(
        config=config, startup_s=p.startup_s, full=p.full, burst=p.burst, offered_rate=p.offered_rate, rate_source=p.rate_source,
        send_rate=p.steady.send_rate, delivered_rate=p.matched.delivered_rate, latencies=p.matched.by_kind,
        thirds=p.matched.thirds, worker_output=p.matched.worker_output, drained=p.drained,
        poll_mean_ms=1000 * sum(gaps) / len(gaps) if gaps else 0.0,
        poll_max_gap_ms=1000 * max(gaps, default=0.0),
        poll_query_ms=1000 * p.watcher.query_s / p.watcher.polls if p.watcher.polls else 0.0,
        worker=p.worker, sink=p.sink, baseline=baseline, notes=p.notes, profiles=p.profiles,
    )


def config_for(ctx: BenchContext) -> E2EBenchConfig:
    """Full (30,000 events from full topics and in the burst, 20 s of fixed load), quick
    (2,000, 5 s), or ``--events N``: N events for both, with the full (or, with ``--quick``, the
    quick) durations; the fixed load's rate from :data:`RATE_ENV` when it is set."""
    base = QUICK if ctx.quick else FULL
    if ctx.events is not None:
        base = dataclasses.replace(base, full_topics_events=ctx.events, burst_events=ctx.events)
    if rate := os.environ.get(RATE_ENV):
        try:
            base = dataclasses.replace(base, offered_rate=float(rate))
        except ValueError as exc:
            raise BenchError(f"{RATE_ENV} must be events per second, not {rate!r}") from exc
    worker_args = tuple(shlex.split(os.environ.get(WORKER_ARGS_ENV, "")))
    timeline = Path(t) if (t := os.environ.get(TIMELINE_ENV)) else None
    return dataclasses.replace(base, profile_dir=ctx.profile_dir, worker_args=worker_args, timeline=timeline)


RATE_ENV = "AXMON_BENCH_E2E_RATE"
"""Events per second of the fixed load, instead of half the maximum measured in the run (to find
the rate up to which a latency holds)."""

WORKER_ARGS_ENV = "AXMON_BENCH_E2E_WORKER_ARGS"
"""More flags for the benchmark's ``axmon worker`` (shell words, e.g. ``--batch-ms 10``), to
compare a setting without editing the code."""

TIMELINE_ENV = "AXMON_BENCH_E2E_TIMELINE"
"""A file to write the fixed load's timeline to (:func:`write_timeline`)."""


def run(ctx: BenchContext) -> Report:
    """The registered entry point."""
    return asyncio.run(run_e2e_bench(ctx.bootstrap, config_for(ctx), ctx.workdir / "e2e")).report()


BENCHMARK = Benchmark("e2e", "End to end: produce to visible in SQLite", run)
