"""Replay throughput: events per second of ``axmon replay`` (:func:`processor.runtime.replay.replay`)
rebuilding a database from the source topics, next to a plain aiokafka consumer that only reads
and decodes the same records, in the same run.

1. Fresh contract topics (a unique prefix, 4 partitions) get N source events: consecutive
   :func:`producers.simulator.generate_scenario` chunks (2,000 executions over 10 minutes of
   event time each, 5 tenants, chunk ``k`` starting ``k`` x 10 minutes after the first), with
   the samples the worker would have derived from them
   (:func:`processor.folds.derived.derived_samples`; a live metrics topic holds them and replay reads
   them back), merged in event-time order and cut at N. Event time ends about an hour ago.
   They are pre-encoded (:func:`schemas.codec.encode_event`, keys from
   :func:`producers.client.route`) and produced straight with aiokafka (lz4, ``linger_ms=50``,
   1 MiB batches, ``acks=1``).
2. **Baseline**: one ``AIOKafkaConsumer`` (the fetch sizes replay uses) assigned every partition
   of both source topics from the beginning, ``getmany`` in a loop, :func:`schemas.decode_event`
   on every value, until all N are decoded (connecting not counted).
3. **Replay**: ``replay(settings, bootstrap, ReplayPlan(fresh db))`` timed end to end in a
   child process of its own (spawned, so its peak RSS is replay's alone, not the producer's or
   the baseline's): connecting, reading, folding, writing through
   :func:`processor.store.sinkdb.write_batch`, the final flush and the rename.

The full run does this at two sizes (1M and 3M events), so the figures show whether replay's
peak memory depends on the length of the history.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import multiprocessing
import os
import statistics
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import (
    BenchContext,
    BenchError,
    Benchmark,
    Figure,
    Report,
    create_contract_topics,
    delete_topics_with_prefix,
    now,
    peak_rss_kib,
    rate,
    unique_prefix,
)
from bench.dbgen import SelfProfile, simulate
from bench.profiling import summarize
from processor.folds.derived import DERIVED_SOURCE
from processor.runtime.replay import ReplayPlan, ReplayResult, replay
from processor.runtime.replay_plan import DEFAULT_WORKERS
from processor.settings import Settings
from producers.client import route
from producers.simulator import ScenarioConfig
from schemas.codec import decode_event, encode_event
from schemas.topics import Topics

FULL_EVENTS = (1_000_000, 3_000_000)
QUICK_EVENTS = (20_000, 60_000)
MINUTE_MS = 60_000
_EVENTS_PER_EXECUTION = 34.0
"""First guess of source events per simulated execution (22.7 from the scenario, ~11 derived)."""


@dataclass(frozen=True, slots=True)
class ReplayBenchConfig:
    events: int = FULL_EVENTS[0]
    partitions: int = 4
    executions_per_chunk: int = 2_000
    chunk_span_ms: int = 10 * MINUTE_MS
    tenants: int = 5
    seed: int = 23
    derived: bool = True
    """Include the samples the worker derives (as a live metrics topic does)."""
    baseline_runs: int = 1
    timeout_s: float = 3_600.0
    profile_dir: Path | None = None
    workers: int = DEFAULT_WORKERS
    """Fold processes (``axmon replay --workers``; ``AXMON_BENCH_REPLAY_WORKERS``)."""


@dataclass(frozen=True, slots=True)
class ProduceResult:
    events: int
    by_type: tuple[tuple[str, int], ...]
    executions: int
    """Executions started among the events."""
    event_span_ms: int
    generate_s: float
    """Simulating and encoding (not counted in the produce rate)."""
    produce_s: float

    @property
    def produce_per_s(self) -> float:
        return rate(self.events, self.produce_s)


@dataclass(frozen=True, slots=True)
class ReplayBenchResult:
    config: ReplayBenchConfig
    produced: ProduceResult
    baseline_runs: tuple[float, ...]
    replay_s: float
    """``replay()`` called -> returned."""
    result: ReplayResult
    db_bytes: int
    peak_rss_kib: int
    """Of the child process that ran the replay (``VmHWM`` when it returned)."""
    profile: Path | None = None

    @property
    def baseline_s(self) -> float:
        return statistics.median(self.baseline_runs)

    @property
    def baseline_per_s(self) -> float:
        return rate(self.produced.events, self.baseline_s)

    @property
    def replay_per_s(self) -> float:
        return rate(self.result.records, self.replay_s)

    @property
    def ratio(self) -> float:
        return self.replay_per_s / self.baseline_per_s if self.baseline_per_s else 0.0

    def figures(self, case: str) -> list[Figure]:
        """The figures of this size, as ``case`` (e.g. "replay 1M") and its baseline."""
        p, r = self.produced, self.result
        base = f"baseline {case.removeprefix('replay ')}: aiokafka + decode_event"
        return [
            Figure(case, "events", r.records, "events"),
            Figure(base, "events/s", self.baseline_per_s, "events/s"),
            Figure(case, "events/s", self.replay_per_s, "events/s"),
            Figure(case, "replay / baseline", self.ratio, "x", 3),
            Figure(base, "seconds", self.baseline_s, "s", 1),
            Figure(case, "seconds", self.replay_s, "s", 1),
            Figure(case, "minutes per million events", self.replay_s / max(1, r.records) * 1e6 / 60, "min", 1),
            Figure(f"produce {case.removeprefix('replay ')} (aiokafka, lz4, acks=1)", "events/s", p.produce_per_s, "events/s"),
            Figure(case, "database", self.db_bytes / 2**20, "MiB", 1),
            Figure(case, "peak RSS of the replay process (and its fold processes)", self.peak_rss_kib / 1024, "MiB"),
        ]

    def notes(self, case: str) -> list[str]:
        p, r = self.produced, self.result
        types = ", ".join(f"{t} {n:,}" for t, n in p.by_type)
        notes = [
            f"{case}: {p.events:,} events from {p.executions:,} simulated executions over "
            f"{p.event_span_ms / 3_600_000:.1f} h of event time: {types}. Simulating and encoding took "
            f"{p.generate_s:.1f} s, producing {p.produce_s:.1f} s. "
            f"Replay wrote {r.executions:,} execution snapshots, {r.samples:,} raw samples, {r.rollups:,} rollups and "
            f"{r.dead_letters:,} dead letters (counted per batch, after coalescing); its own rate figure "
            f"(ReplayResult.rate) was {r.rate:,.0f} events/s.",
        ]
        if self.profile is not None and self.profile.exists():
            summary = summarize(self.profile, top=12)
            hot = "; ".join(f"{e.function} {e.self_share:.0%}" for e in summary.by_self)
            notes.append(f"{case}: profiled with py-spy (figures include its overhead; {self.profile}); most self time: {hot}")
        return notes

    def report(self) -> Report:
        return sized_report([self])


def size_label(events: int) -> str:
    """``"1M"``, ``"300k"``, ``"20k"``, ``"512"``."""
    if events >= 1_000_000 and events % 100_000 == 0:
        return f"{events / 1_000_000:g}M"
    if events >= 1_000 and events % 1_000 == 0:
        return f"{events // 1_000}k"
    return str(events)


def sized_report(results: list[ReplayBenchResult]) -> Report:
    """One report of one or more sizes: a column per size."""
    figures: list[Figure] = []
    notes: list[str] = []
    for result in results:
        case = f"replay {size_label(result.produced.events)}"
        figures += result.figures(case)
        notes += result.notes(case)
    config = results[0].config
    return Report(BENCHMARK.name, BENCHMARK.title, METHOD.format(
        partitions=config.partitions, per_chunk=config.executions_per_chunk,
        span=config.chunk_span_ms // MINUTE_MS, tenants=config.tenants,
        derived="with" if config.derived else "without", workers=config.workers), tuple(figures), tuple(notes))


METHOD = """\
Fresh topics ({partitions} partitions) get N source events: consecutive `generate_scenario`
chunks ({per_chunk:,} executions over {span} minutes of event time each, {tenants} tenants),
{derived} the samples the worker derives from them (a live metrics topic holds those and replay
reads them back), in event-time order, cut at N, pre-encoded with `encode_event` and produced
with aiokafka directly (lz4, linger 50 ms, 1 MiB batches, acks=1; keys from
`producers.client.route`).
**Baseline**: one `AIOKafkaConsumer` with replay's fetch sizes, assigned every partition of both
source topics from the beginning, `getmany` in a loop and `schemas.decode_event` on each value
until all N are decoded (connecting not counted).
**Replay**: `processor.runtime.replay.replay(settings, bootstrap, ReplayPlan(fresh db,
workers={workers}))` (`AXMON_BENCH_REPLAY_WORKERS` sets the fold processes) in a
spawned child process of its own, timed there from the call to its return (connecting, reading
the partitions in bounded chunks, folding with the worker's cores over tables that spill what
only a late record reads again to a scratch file, `write_batch` every 20,000 records, the final
flush, switching the journal, syncing and renaming the file); its peak RSS is that child's
`VmHWM` plus its fold processes' (with more than one), so it is replay's alone. Each size is a separate run on fresh topics; if peak RSS
does not grow from the smaller size to the larger, replay's memory does not depend on the
length of the history."""


# -- events ------------------------------------------------------------------------------------


@dataclass
class _Tally:
    by_type: Counter[str]
    executions: int = 0
    first_ms: int = 0
    last_ms: int = 0
    generate_s: float = 0.0


def chunk_shape(config: ReplayBenchConfig) -> tuple[int, int]:
    """(executions, event-time span) of one simulated chunk: ``config``'s, or proportionally
    fewer for a small N (so that a quick run is not one chunk cut short)."""
    per_execution = _EVENTS_PER_EXECUTION * (1.0 if config.derived else 0.67)
    executions = max(1, min(config.executions_per_chunk, math.ceil(config.events / per_execution)))
    span = max(MINUTE_MS, config.chunk_span_ms * executions // config.executions_per_chunk)
    return executions, span


def encoded_events(config: ReplayBenchConfig, topics: Topics, tally: _Tally) -> Iterator[tuple[str, bytes, bytes]]:
    """(topic, key, value) of the first ``config.events`` events, chunk by chunk."""
    executions, span = chunk_shape(config)
    per_chunk = executions * _EVENTS_PER_EXECUTION * (1.0 if config.derived else 0.67)
    chunks_needed = math.ceil(config.events / per_chunk * 1.5) + 1
    base = int(time.time() * 1000) - 3_600_000 - chunks_needed * span
    base -= base % MINUTE_MS
    left = config.events
    k = 0
    tally.first_ms = base
    while left > 0:
        t = now()
        sim = simulate(ScenarioConfig(seed=config.seed + k, tenants=config.tenants, executions=executions,
                                      start_ms=base + k * span, span_ms=span))
        events = (list(heapq.merge(sim.events, sim.derived, key=lambda e: e.occurred_at)) if config.derived
                  else list(sim.events))[:left]
        encoded = []
        for e in events:
            topic, key = route(e, topics)
            encoded.append((topic, key, encode_event(e)))
            tally.by_type[e.TYPE if e.source != DERIVED_SOURCE else f"{e.TYPE} (derived)"] += 1
        tally.executions += sum(1 for e in events if e.TYPE == "execution.started")
        tally.last_ms = max(tally.last_ms, max((e.occurred_at for e in events), default=0))
        tally.generate_s += now() - t
        left -= len(events)
        k += 1
        yield from encoded


async def produce_events(bootstrap: str, config: ReplayBenchConfig, topics: Topics) -> ProduceResult:
    """Simulate, encode and publish ``config.events`` events; wait for every acknowledgement."""
    tally = _Tally(Counter())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, compression_type="lz4", linger_ms=50,
                                max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024,
                                client_id="axmon-bench-replay")
    await producer.start()
    began = now()
    sent = 0
    try:
        pending = []
        for topic, key, value in encoded_events(config, topics, tally):
            pending.append(await producer.send(topic, value, key=key))
            sent += 1
            if len(pending) >= 50_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    total_s = now() - began
    if sent != config.events:
        raise BenchError(f"produced {sent} events, wanted {config.events}")
    return ProduceResult(sent, tuple(sorted(tally.by_type.items(), key=lambda kv: -kv[1])), tally.executions,
                         tally.last_ms - tally.first_ms, tally.generate_s, total_s - tally.generate_s)


# -- the baseline ------------------------------------------------------------------------------


async def baseline_run(bootstrap: str, topics: Topics, partitions: int, expected: int, timeout_s: float) -> float:
    """Read both source topics from the beginning, decoding every value, until ``expected``
    events are decoded; returns the seconds that took (from the first fetch)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
                                client_id="axmon-bench-replay-baseline")
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics.sources for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count = 0
        began = now()
        while count < expected:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for messages in fetched.values():
                for m in messages:
                    decode_event(m.value or b"")
                count += len(messages)
            if now() - began > timeout_s:
                raise BenchError(f"baseline: {count} of {expected} events after {timeout_s:.0f} s")
        return now() - began
    finally:
        await consumer.stop()


# -- the whole benchmark -----------------------------------------------------------------------


async def run_replay_bench(bootstrap: str, config: ReplayBenchConfig, workdir: Path) -> ReplayBenchResult:
    """Produce, read with the baseline, replay; the topics are deleted afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = unique_prefix("replay")
    topics = await create_contract_topics(bootstrap, prefix, config.partitions)
    try:
        produced = await produce_events(bootstrap, config, topics)
        runs = [await baseline_run(bootstrap, topics, config.partitions, produced.events, config.timeout_s)
                for _ in range(max(1, config.baseline_runs))]
        db = workdir / f"replay-{prefix.strip('.')}.db"
        profile = config.profile_dir / f"replay-{config.events}.collapsed.txt" if config.profile_dir is not None else None
        result, replay_s, peak = await asyncio.to_thread(replay_in_child, bootstrap, prefix, config, db, profile)
        if result.records != produced.events:
            raise BenchError(f"replay read {result.records} records, {produced.events} were produced")
        size = db.stat().st_size
        db.unlink()
        if profile is not None and profile.exists():
            profile.with_name(f"replay-{config.events}.top.txt").write_text(summarize(profile).text())
        return ReplayBenchResult(config, produced, tuple(runs), replay_s, result, size, peak, profile)
    finally:
        await delete_topics_with_prefix(bootstrap, prefix)


def replay_in_child(bootstrap: str, prefix: str, config: ReplayBenchConfig, db: Path,
                    profile: Path | None) -> tuple[ReplayResult, float, int]:
    """Run the replay in a spawned process: (its result, its seconds, its peak RSS in KiB)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child_main, args=(bootstrap, prefix, config.partitions, str(db),
                                                     None if profile is None else str(profile), config.timeout_s,
                                                     config.workers, queue))
    child.start()
    try:
        outcome = queue.get(timeout=config.timeout_s + 120)
    finally:
        child.join(60)
        if child.is_alive():
            child.kill()
            child.join()
    if isinstance(outcome, str):
        raise BenchError(f"replay failed in its child process:\n{outcome}")
    result, replay_s, peak = outcome
    return result, replay_s, peak


def _child_main(bootstrap: str, prefix: str, partitions: int, db: str, profile: str | None, timeout_s: float,
                workers: int, queue: Any) -> None:
    try:
        settings = Settings(topic_prefix=prefix, partitions=partitions)
        with SelfProfile(None if profile is None else Path(profile)):
            began = now()
            result = asyncio.run(asyncio.wait_for(replay(settings, bootstrap, ReplayPlan(Path(db), workers=workers)), timeout_s))
            replay_s = now() - began
        queue.put((result, replay_s, peak_rss_kib(os.getpid()) + result.workers_peak_kib))  # with its fold processes
    except BaseException:  # noqa: BLE001 - the parent reports it
        queue.put(traceback.format_exc())


def configs_for(ctx: BenchContext) -> list[ReplayBenchConfig]:
    """Full (1M and 3M events), quick (20k and 60k), or ``--events N`` (N only)."""
    sizes = (ctx.events,) if ctx.events is not None else (QUICK_EVENTS if ctx.quick else FULL_EVENTS)
    workers = os.environ.get(WORKERS_ENV) or str(DEFAULT_WORKERS)
    if not workers.isdigit() or int(workers) < 1:
        raise BenchError(f"{WORKERS_ENV} must be a number of fold processes (1 or more), not {workers!r}")
    return [ReplayBenchConfig(events=n, profile_dir=ctx.profile_dir, workers=int(workers)) for n in sizes]


WORKERS_ENV = "AXMON_BENCH_REPLAY_WORKERS"
"""Fold processes of the replays measured (``axmon replay --workers``), instead of its default."""


def run(ctx: BenchContext) -> Report:
    """The registered entry point: each size on fresh topics, one after the other."""
    return sized_report([asyncio.run(run_replay_bench(ctx.bootstrap, config, ctx.workdir / "replay"))
                         for config in configs_for(ctx)])


BENCHMARK = Benchmark("replay", "Replay throughput", run)
