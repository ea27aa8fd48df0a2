"""Several workers: throughput of one ``axmon worker`` against two in one group, on this machine.

For each count of workers (1, then 2), on fresh contract topics (4 partitions) holding the same
simulated lifecycle events (the heavier mix: each event also causes ~0.7 derived samples and
~0.15 stats changes that the group folds too):

1. the workers are launched at once, each with its own ``--state-dir``, and watched from
   outside through their group's committed offsets (:class:`bench.worker.GroupProbe`);
2. *startup* is the time until the group first commits, *drained* until every topic the
   workers consume is committed to its end; the events per second are counted from the
   launch (including startup: joining, the rebalance as the second member arrives, the tables'
   recovery) and from the first commit (excluding it);
3. the CPU time of all the workers together is read from ``/proc`` before they are stopped.

On a 2-core machine shared with the broker and the probe, two workers can win at most what
one leaves idle: one worker is bound by its one Python thread; two compete with the broker.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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
    rate,
    unique_prefix,
)
from bench.worker import (
    HOUR_MS,
    GroupProbe,
    WorkerBenchConfig,
    _launch,
    _log_tail,
    _partitions,
    _stop,
    mix_events,
    publish,
)

FULL_EVENTS = 30_000
QUICK_EVENTS = 4_000
COUNTS = (1, 2)
PARTITIONS = 4


@dataclass(frozen=True, slots=True)
class GroupRun:
    workers: int
    events: int
    startup_s: float
    drained_s: float
    cpu_s: float

    @property
    def events_per_s(self) -> float:
        return rate(self.events, self.drained_s)

    @property
    def processing_events_per_s(self) -> float:
        return rate(self.events, self.drained_s - self.startup_s)


async def run_group(bootstrap: str, count: int, events: int, workdir: Path, timeout_s: float) -> GroupRun:
    """``count`` workers on fresh topics holding ``events`` lifecycle events, until drained."""
    config = WorkerBenchConfig(partitions=PARTITIONS)
    generated, _ = mix_events("lifecycle", events, config, int(time.time() * 1000) - 2 * HOUR_MS)
    prefix = unique_prefix(f"workers-{count}")
    topics = await create_contract_topics(bootstrap, prefix, PARTITIONS)
    procs: list[subprocess.Popen[bytes]] = []
    probe = GroupProbe(bootstrap, f"{prefix}worker")
    try:
        await publish(bootstrap, topics, generated)
        await probe.start()
        consumed = _partitions([topics.workflow_events, topics.metrics, topics.stats_changes], PARTITIONS)
        rundir = workdir / f"{count}-workers"
        rundir.mkdir(parents=True, exist_ok=True)
        began = now()
        for n in range(count):
            cmd = [sys.executable, "-m", "processor.cli", "worker", "--bootstrap", bootstrap, "--topic-prefix", prefix,
                   "--partitions", str(PARTITIONS), "--grace-ms", str(config.grace_ms),
                   "--state-dir", str(rundir / f"state-{n}")]
            procs.append(_launch(cmd, rundir, rundir / f"worker-{n}.log"))
        startup: float | None = None
        while True:
            for n, proc in enumerate(procs):
                if proc.poll() is not None:
                    raise BenchError(f"worker {n} exited with code {proc.returncode}:\n{_log_tail(rundir / f'worker-{n}.log')}")
            if now() - began > timeout_s:
                raise BenchError(f"{count} workers did not drain {len(generated):,} events in {timeout_s:.0f} s")
            committed = await probe.committed()
            if startup is None and any(offset > 0 for offset in committed.values()):
                startup = now() - began
            ends = await probe.end_offsets(consumed)
            if startup is not None and all(committed.get(tp, 0) >= end for tp, end in ends.items()):
                drained = now() - began
                break
            await asyncio.sleep(0.25)
        cpu = sum(cpu_seconds(proc.pid) for proc in procs)
        return GroupRun(count, len(generated), drained if startup is None else startup, drained, cpu)
    finally:
        await asyncio.gather(*(asyncio.to_thread(_stop, proc) for proc in procs))
        await probe.stop()
        await delete_topics_with_prefix(bootstrap, prefix)


def run(ctx: BenchContext) -> Report:
    events = ctx.events or (QUICK_EVENTS if ctx.quick else FULL_EVENTS)
    timeout_s = 120.0 + events / 100

    async def both() -> list[GroupRun]:
        return [await run_group(ctx.bootstrap, count, events, ctx.workdir / "workers", timeout_s) for count in COUNTS]

    runs = asyncio.run(both())
    figures: list[Figure] = []
    for r in runs:
        case = f"{r.workers} worker{'s' if r.workers > 1 else ''}"
        figures += [
            Figure(case, "events", r.events, "events"),
            Figure(case, "events/s, excluding startup", r.processing_events_per_s, "events/s"),
            Figure(case, "events/s, including startup", r.events_per_s, "events/s"),
            Figure(case, "startup (first commit)", r.startup_s, "s", 2),
            Figure(case, "drained", r.drained_s, "s", 2),
            Figure(case, "CPU time, all workers", r.cpu_s, "s", 1),
        ]
    one, two = runs
    figures.append(Figure("2 workers", "speed-up over 1 (excl. startup)", two.processing_events_per_s / one.processing_events_per_s
                          if one.processing_events_per_s else 0.0, "x", 2))
    return Report("workers", "Several workers in one group", __doc__ or "", tuple(figures))


BENCHMARK = Benchmark("workers", "Several workers in one group", run)
