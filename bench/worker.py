"""Worker throughput: how many source events per second ``axmon worker`` folds, next to a plain
aiokafka consumer that only decodes the same events, in the same run.

For each mix (``lifecycle``: only lifecycle events; ``metrics``: only metric samples):

1. fresh contract topics (a unique prefix) get N simulated events through the SDK
   (:func:`producers.simulator.generate_scenario`, event time starting two hours ago so that
   nothing is late for a worker run with ``--grace-ms 3600000``);
2. the *baseline*: an ``AIOKafkaConsumer`` assigned every partition of the source topic, from
   the beginning, ``getmany`` in a loop, :func:`schemas.decode_event` on every value, until it
   has decoded all N;
3. *Faust's floor* (:mod:`bench.faust_floor`, a subprocess per run): a Faust app with the
   worker's settings (:func:`processor.runtime.faust_app.app_options`) and one agent on the source topic
   that reads batches as the worker does and only decodes, from the beginning (a fresh app id)
   until all N are decoded; once as the worker is configured, once ``--tuned`` (the tunings of
   :func:`bench.faust_floor.tuned_options` and :func:`bench.faust_floor.tune_app`). What Faust
   itself costs per message, which no change in the worker's own code can win back;
4. the *worker*: ``python -m processor.cli worker`` is started (after the events are in) and
   watched from outside: its consumer group (the Faust app id, ``<prefix>worker``) has caught
   up once its committed offsets on the source topic equal the topic's end offsets. Startup is
   the time until the first sign of work: a committed offset, or the first record on a topic
   the worker writes (its derived topics or its tables' changelogs). Peak RSS (``VmHWM``) and
   CPU time are read from ``/proc`` before it is stopped with SIGTERM. *Drained* is when every
   topic the worker consumes (the source, and the derived samples and stats changes the source
   events caused) is committed up to its end.

The worker commits once a second, so a caught-up time is late by up to a second (plus the
0.1-0.25 s polling interval): small against a run of tens of seconds, large in a quick run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

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
from bench.faust_floor import TUNED_SUMMARY
from bench.profiling import start_profiler, stop_profiler, summarize
from processor.ops.children import RESTART_NOTICE
from producers import AxmonProducer, ProducerConfig
from producers.simulator import ScenarioConfig, generate_scenario
from schemas.codec import decode_event
from schemas.events import Event, LifecycleEvent, MetricRecorded
from schemas.topics import Topics

MIXES: dict[str, type[Event]] = {"lifecycle": LifecycleEvent, "metrics": MetricRecorded}
"""Mix name -> the only event type it holds."""
FULL_SIZES: tuple[tuple[str, int], ...] = (("lifecycle", 50_000), ("metrics", 50_000))
"""(mix, events) of a full run: about a minute per mix on a 2-core machine (the lifecycle mix
is the slow one: its events cause ~0.7 derived samples and ~0.15 stats changes each, which the
worker processes too). ``python -m bench --only worker --events 100000`` for longer runs."""
QUICK_SIZES: tuple[tuple[str, int], ...] = (("lifecycle", 3_000), ("metrics", 3_000))
HOUR_MS = 3_600_000
_EVENTS_PER_EXECUTION = {"lifecycle": 13.0, "metrics": 8.0}
"""First guesses of events per simulated execution (the generator corrects them)."""


@dataclass(frozen=True, slots=True)
class WorkerBenchConfig:
    """What the worker benchmark runs."""

    mixes: tuple[tuple[str, int], ...] = FULL_SIZES
    """(mix, events), run in this order."""
    partitions: int = 4
    grace_ms: int = HOUR_MS
    """Passed to the worker as ``--grace-ms``: with event time from two hours ago nothing is late."""
    tenants: int = 5
    span_ms: int = HOUR_MS
    memory_sizes: tuple[int, ...] = (20_000, 60_000)
    """Lifecycle runs over a long event-time span at one density (``memory_density_per_h``
    events per hour of event time), to show that the worker's peak RSS follows what its
    tables must hold (a horizon of open and finished executions, their markers, open and
    closed-derived windows: about 9 hours of stream time by default), not the events it has
    processed. Empty: none (quick runs)."""
    memory_density_per_h: int = 1_700
    """Executions start uniformly within this much event time (from two hours ago)."""
    seed: int = 11
    baseline_runs: int = 3
    """The baseline reads the topic this many times; its figure is the median."""
    floor_runs: int | None = None
    """Runs of Faust's floor, each of the default and the tuned one (the median counts);
    ``None``: ``baseline_runs``. A quick run makes it 1 (each run starts a Faust app: seconds)."""
    stall_s: float = 60.0
    """Give up when the worker has committed nothing new for this long."""
    timeout_s: float | None = None
    """Per phase (baseline, worker until drained); default ``120 + events / 100`` s."""
    profile_dir: Path | None = None
    """When set, the worker runs under ``py-spy record`` and its profile is written here."""

    def deadline_s(self, events: int) -> float:
        return self.timeout_s if self.timeout_s is not None else 120.0 + events / 100

    @property
    def floor_run_count(self) -> int:
        return max(1, self.baseline_runs if self.floor_runs is None else self.floor_runs)

    @classmethod
    def sized(cls, events: int, *, timeout_s: float | None = None, profile_dir: Path | None = None,
              floor_runs: int | None = None, memory_sizes: tuple[int, ...] = ()) -> WorkerBenchConfig:
        """Every mix with the same number of events (and the long-span runs of ``memory_sizes``)."""
        return cls(mixes=tuple((mix, events) for mix in MIXES), timeout_s=timeout_s, profile_dir=profile_dir,
                   floor_runs=floor_runs, memory_sizes=memory_sizes)


class _TimedRuns:
    """The median of a read's runs (``events``, ``runs``: seconds of each)."""

    __slots__ = ()
    events: int
    runs: tuple[float, ...]

    @property
    def seconds(self) -> float:
        """The median run."""
        return statistics.median(self.runs) if self.runs else 0.0

    @property
    def events_per_s(self) -> float:
        return rate(self.events, self.seconds)


@dataclass(frozen=True, slots=True)
class BaselineResult(_TimedRuns):
    """The plain consumer: decode every event of the source topic, nothing else."""

    events: int
    runs: tuple[float, ...]
    """Seconds of each run, from the first ``getmany`` to the last event decoded (connecting
    is not counted)."""


@dataclass(frozen=True, slots=True)
class FloorResult(_TimedRuns):
    """Faust's floor (:mod:`bench.faust_floor`): the worker's Faust app settings, one agent that
    only decodes the source topic's events."""

    events: int
    tuned: bool
    runs: tuple[float, ...]
    """Seconds of each run, from the first event the agent got to the last one decoded (the
    app's startup is not counted)."""
    cpu_per_event_us: tuple[float, ...] = ()
    """Of each run: the process's CPU time over those seconds, per event."""
    inbox: bool = False
    """The agent took its batches from the worker's inbox (:mod:`processor.runtime.inbox`),
    not from Faust's ``take_events``."""

    @property
    def cpu_us(self) -> float:
        """The median CPU time per event, in microseconds."""
        return statistics.median(self.cpu_per_event_us) if self.cpu_per_event_us else 0.0


@dataclass(frozen=True, slots=True)
class WorkerRunResult:
    """One ``axmon worker`` process from launch until it had committed every source event."""

    events: int
    startup_s: float
    """Launch -> first sign of work (a committed offset or a record the worker wrote)."""
    committed_at_startup: int
    """Source events already committed when the startup was noticed."""
    caught_up_s: float
    """Launch -> committed offsets equal the source topic's end offsets."""
    drained_s: float
    """Launch -> every topic the worker consumes (source, derived samples, stats changes)
    committed up to its end: the work the source events cause is done too."""
    peak_rss_kib: int
    cpu_s: float
    """User + system CPU time of the worker process over the whole run."""
    exit_code: int | None
    """After SIGTERM: 0 for a graceful stop."""
    outputs: tuple[tuple[str, int], ...] = ()
    """(topic, records the worker wrote to it), for the topics it writes."""
    profile: Path | None = None

    @property
    def events_per_s(self) -> float:
        """Including startup: what a cold worker with a backlog delivers."""
        return rate(self.events, self.caught_up_s)

    @property
    def processing_s(self) -> float:
        return self.caught_up_s - self.startup_s

    @property
    def processing_events_per_s(self) -> float:
        """Excluding startup: steady-state throughput."""
        return rate(self.events - self.committed_at_startup, self.processing_s)


@dataclass(frozen=True, slots=True)
class MixResult:
    mix: str
    events: int
    executions: int
    """Simulated executions the events were drawn from."""
    produce_s: float
    """Publishing the N events with the SDK (acks=all), for context."""
    baseline: BaselineResult
    floor: FloorResult
    floor_tuned: FloorResult
    floor_inbox: FloorResult
    worker: WorkerRunResult

    @property
    def ratio(self) -> float:
        """Worker (excluding startup) / baseline events per second."""
        return self.worker.processing_events_per_s / self.baseline.events_per_s if self.baseline.events_per_s else 0.0

    @property
    def ratio_with_startup(self) -> float:
        return self.worker.events_per_s / self.baseline.events_per_s if self.baseline.events_per_s else 0.0

    @property
    def floor_ratio(self) -> float:
        """Worker (excluding startup) / Faust's floor (as the worker is configured) events per second."""
        return self.worker.processing_events_per_s / self.floor.events_per_s if self.floor.events_per_s else 0.0

    @property
    def inbox_floor_ratio(self) -> float:
        """Worker (excluding startup) / the floor through the worker's inbox."""
        inbox = self.floor_inbox.events_per_s
        return self.worker.processing_events_per_s / inbox if inbox else 0.0


@dataclass(frozen=True, slots=True)
class WorkerBenchResult:
    config: WorkerBenchConfig
    mixes: tuple[MixResult, ...] = field(default_factory=tuple)
    memory: tuple[MemoryResult, ...] = field(default_factory=tuple)

    def report(self) -> Report:
        figures: list[Figure] = []
        notes: list[str] = []
        for m in self.mixes:
            w = m.worker
            figures += [
                Figure(m.mix, "events", m.events, "events"),
                Figure(m.mix, "SDK produce (acks=all)", rate(m.events, m.produce_s), "events/s"),
                Figure(m.mix, "baseline: aiokafka + decode", m.baseline.events_per_s, "events/s"),
                Figure(m.mix, "Faust floor: decode-only agent (worker's settings)", m.floor.events_per_s, "events/s"),
                Figure(m.mix, "Faust floor, tuned", m.floor_tuned.events_per_s, "events/s"),
                Figure(m.mix, "Faust floor CPU per event", m.floor.cpu_us, "us", 0),
                Figure(m.mix, "Faust floor, tuned: CPU per event", m.floor_tuned.cpu_us, "us", 0),
                Figure(m.mix, "floor through the worker's inbox", m.floor_inbox.events_per_s, "events/s"),
                Figure(m.mix, "floor through the inbox: CPU per event", m.floor_inbox.cpu_us, "us", 0),
                Figure(m.mix, "worker, excluding startup", w.processing_events_per_s, "events/s"),
                Figure(m.mix, "worker, including startup", w.events_per_s, "events/s"),
                Figure(m.mix, "worker / baseline (excl. startup)", m.ratio, "x", 3),
                Figure(m.mix, "worker / baseline (incl. startup)", m.ratio_with_startup, "x", 3),
                Figure(m.mix, "worker / Faust floor", m.floor_ratio, "x", 3),
                Figure(m.mix, "worker / floor through the inbox", m.inbox_floor_ratio, "x", 3),
                Figure(m.mix, "worker startup", w.startup_s, "s", 2),
                Figure(m.mix, "worker caught up (source committed)", w.caught_up_s, "s", 2),
                Figure(m.mix, "worker drained (all consumed topics)", w.drained_s, "s", 2),
                Figure(m.mix, "worker CPU time", w.cpu_s, "s", 1),
                Figure(m.mix, "worker peak RSS", w.peak_rss_kib / 1024, "MiB", 1),
            ]
            outputs = ", ".join(f"{topic.rpartition('.')[2]} {count:,}" for topic, count in w.outputs if count)
            notes.append(f"{m.mix}: {m.events:,} events from {m.executions:,} simulated executions; "
                         f"the worker wrote {outputs or 'nothing'}; exit code after SIGTERM {w.exit_code}.")
            if w.profile is not None and w.profile.exists():
                summary = summarize(w.profile, top=8)
                hot = "; ".join(f"{e.function} {e.self_share:.0%}" for e in summary.by_self)
                notes.append(f"{m.mix}: profiled with py-spy (figures include its overhead), {w.profile}; "
                             f"most self time: {hot}")
        for r in self.memory:
            case = f"lifecycle, {r.events:,} over {r.span_h:.0f} h"
            figures += [
                Figure(case, "events", r.events, "events"),
                Figure(case, "worker, excluding startup", r.worker.processing_events_per_s, "events/s"),
                Figure(case, "worker CPU time", r.worker.cpu_s, "s", 1),
                Figure(case, "worker peak RSS", r.worker.peak_rss_kib / 1024, "MiB", 1),
            ]
        if len(self.memory) > 1:
            small, large = self.memory[0], self.memory[-1]
            notes.append(
                f"Peak RSS over a long event-time span ({self.config.memory_density_per_h:,} events per hour of event "
                f"time): {small.worker.peak_rss_kib / 1024:.0f} MiB after {small.events:,} events, "
                f"{large.worker.peak_rss_kib / 1024:.0f} MiB after {large.events:,} "
                f"({large.events / max(1, small.events):.1f}x the events): the tables hold a horizon of executions, "
                "their markers and windows, not the history.")
        return Report(BENCHMARK.name, BENCHMARK.title, METHOD.format(
            partitions=self.config.partitions, grace=self.config.grace_ms, tenants=self.config.tenants,
            runs=self.config.baseline_runs, floor_runs=self.config.floor_run_count, tuned=TUNED_SUMMARY,
            span=self.config.span_ms // 60_000), tuple(figures), tuple(notes))


METHOD = """\
Per mix, fresh topics ({partitions} partitions) are filled through the SDK with simulated events
({tenants} tenants, executions starting within {span} min, event time two hours ago):
`lifecycle` holds only lifecycle events, `metrics` only metric samples.
**Baseline**: one `AIOKafkaConsumer` assigned every partition from the beginning, `getmany` in a
loop, `schemas.decode_event` on each value, until all N are decoded (connecting not counted);
the median of {runs} such reads.
**Faust floor**: `python -m bench.faust_floor`, a Faust app with the worker's settings
(`processor.runtime.faust_app.app_options`, and its corrections of Faust) and one agent on the source topic
that takes batches as the worker's agents do (`take_events`, with the worker's default
`--batch-max` and `--batch-ms`) and only decodes
each value; a fresh app id, so it reads from the beginning; timed from the first event the agent
gets to the last one decoded (the app's startup not counted); the median of {floor_runs} runs. It is
what Faust itself costs per message, below which no change in the worker's own code can go.
*Tuned* changes only what is safe for the worker:
{tuned}.
**Floor through the worker's inbox**: the same app and agent, with the batches taken as the worker
takes them (`--inbox`: `processor.runtime.inbox`, the consumer's fetch loop hands each record to
the agent's inbox without Faust's per-record tasks, events and stream): what consuming costs
the worker now; the rest of its cost is its own work (folds, table writes, sends).
**Worker**: `python -m processor.cli worker --partitions {partitions} --grace-ms {grace}` started
after the events are in, watched from outside: *caught up* when its consumer group's committed
offsets equal the source topic's end offsets; *startup* is the time to the first committed
offset or first record the worker writes; *drained* when every topic it consumes (the source,
derived samples, stats changes) is committed to its end. "Excluding startup" is
(N - committed at startup) / (caught up - startup). The worker commits once a second, so the
caught-up time is late by up to ~1 s. Peak RSS is `VmHWM` of the worker process.
Broker, worker and benchmark share the machine's cores. The worker's cost per event grows with
its tables (executions stay an hour of stream time; with `--grace-ms {grace}` metric windows
do too), so its figures depend on N and on the event-time span."""


# -- events ------------------------------------------------------------------------------------


def mix_events(mix: str, n: int, config: WorkerBenchConfig, start_ms: int) -> tuple[list[Event], int]:
    """The first ``n`` events (event-time order) of the mix's type in a scenario just big
    enough, and how many executions that scenario simulated."""
    kind = MIXES[mix]
    executions = max(1, math.ceil(n / _EVENTS_PER_EXECUTION[mix] * 1.05))
    for _ in range(8):
        scenario = generate_scenario(ScenarioConfig(
            seed=config.seed, tenants=config.tenants, executions=executions, start_ms=start_ms,
            span_ms=config.span_ms,
        ))
        events = [e for e in scenario if isinstance(e, kind)]
        if len(events) >= n:
            return events[:n], executions
        executions = math.ceil(executions * n / max(1, len(events)) * 1.05) + 1
    raise BenchError(f"could not simulate {n} {mix} events")


async def publish(bootstrap: str, topics: Topics, events: Sequence[Event]) -> float:
    """Publish with the SDK and wait for every acknowledgement; returns the seconds it took."""
    began = now()
    async with AxmonProducer(config=ProducerConfig(bootstrap=bootstrap, topics=topics, client_id="axmon-bench")) as producer:
        for event in events:
            await producer.publish(event)
        await producer.flush()
    return now() - began


# -- the baseline ------------------------------------------------------------------------------


async def baseline(bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float, runs: int) -> BaselineResult:
    """:func:`baseline_run` ``runs`` times."""
    seconds = [await baseline_run(bootstrap, topic, partitions, expected, timeout_s) for _ in range(max(1, runs))]
    return BaselineResult(expected, tuple(seconds))


async def baseline_run(bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float) -> float:
    """Read ``topic`` from the beginning with a plain consumer, decoding every value, until
    ``expected`` events are decoded; returns the seconds that took."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", client_id="axmon-bench-baseline")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count = 0
        began = now()
        while count < expected:
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                for message in messages:
                    decode_event(message.value or b"")
                count += len(messages)
            if now() - began > timeout_s:
                raise BenchError(f"baseline: {count} of {expected} events after {timeout_s:.0f} s")
        return now() - began
    finally:
        await consumer.stop()


# -- Faust's floor -----------------------------------------------------------------------------


def _tail(text: str | bytes | None, lines: int = 30) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:]) or "(nothing on stderr)"


async def faust_floor(bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float, runs: int,
                      workdir: Path, *, tuned: bool, inbox: bool = False) -> FloorResult:
    """:func:`faust_floor_run` ``runs`` times."""
    results = [await faust_floor_run(bootstrap, topic, partitions, expected, timeout_s, workdir, tuned=tuned, inbox=inbox)
               for _ in range(max(1, runs))]
    return FloorResult(expected, tuned, tuple(seconds for seconds, _ in results),
                       tuple(cpu for _, cpu in results), inbox=inbox)


async def faust_floor_run(bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float,
                          workdir: Path, *, tuned: bool, inbox: bool = False) -> tuple[float, float]:
    """One ``python -m bench.faust_floor`` (a fresh app id, so from the beginning) until it has
    decoded ``expected`` events: (its seconds from first event to last, its CPU us per event).
    It runs in ``workdir`` (Faust makes an ``<app id>-data`` directory there)."""
    workdir.mkdir(parents=True, exist_ok=True)
    app_id = f"axmon-bench-floor-{uuid.uuid4().hex[:10]}"
    cmd = [sys.executable, "-m", "bench.faust_floor", "--bootstrap", bootstrap, "--topic", topic,
           "--partitions", str(partitions), "--expected", str(expected), "--app-id", app_id]
    if tuned:
        cmd.append("--tuned")
    if inbox:
        cmd.append("--inbox")
    label = "Faust floor" + (", tuned" if tuned else "") + (", inbox" if inbox else "")
    try:
        proc = await asyncio.to_thread(subprocess.run, cmd, cwd=workdir, env=subprocess_env(), capture_output=True,
                                       timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:  # the child is killed
        raise BenchError(f"{label}: not done after {timeout_s:.0f} s (app {app_id}):\n{_tail(exc.stderr)}") from exc
    if proc.returncode != 0:
        raise BenchError(f"{label} exited with code {proc.returncode} (app {app_id}):\n{_tail(proc.stderr)}")
    try:
        result = json.loads(proc.stdout.decode(errors="replace").strip().splitlines()[-1])
        events, seconds, cpu = int(result["events"]), float(result["seconds"]), float(result["processing_cpu_s"])
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"{label}: no result line ({exc}); stdout {proc.stdout[-500:]!r}:\n{_tail(proc.stderr)}") from exc
    if events < expected:
        raise BenchError(f"{label}: decoded {events} of {expected} events")
    return seconds, cpu / events * 1e6 if events else 0.0


# -- the worker --------------------------------------------------------------------------------


class GroupProbe:
    """Watches a consumer group from outside: its committed offsets, and topics' end offsets."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.group = group
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                          client_id="axmon-bench-probe")
        self._coordinator: int | None = None

    async def start(self, timeout_s: float = 60.0) -> None:
        """Connect, and find the group's coordinator (on a fresh broker this creates
        ``__consumer_offsets``, which the worker's startup should not be charged for)."""
        await self._admin.start()
        await self._consumer.start()
        deadline = now() + timeout_s
        while self._coordinator is None:
            try:
                self._coordinator = await self._admin.find_coordinator(self.group)
            except KafkaError:
                if now() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def stop(self) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def committed(self) -> dict[TopicPartition, int]:
        """The group's committed offsets ({} before its first commit; transient errors too)."""
        try:
            offsets = await self._admin.list_consumer_group_offsets(self.group, group_coordinator_id=self._coordinator)
        except KafkaError:
            return {}
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return dict(await self._consumer.end_offsets(list(tps))) if tps else {}

    async def topic_names(self) -> set[str]:
        return set(await self._admin.list_topics())


def _partitions(topics: Sequence[str], partitions: int) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in topics for p in range(partitions)]


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _launch(cmd: list[str], workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in ``workdir``, stdout and stderr to ``log`` (a fork and exec: instant)."""
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=subprocess_env())


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int | None:
    """SIGTERM and wait (graceful: Faust commits and leaves the group); SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    return proc.returncode


async def run_worker(
    bootstrap: str,
    topics: Topics,
    source: str,
    config: WorkerBenchConfig,
    workdir: Path,
    profile: Path | None = None,
) -> WorkerRunResult:
    """Launch ``axmon worker`` on ``topics`` (the events already in ``source``), wait until it
    has committed all of them and everything they caused, read its peak RSS, stop it."""
    group = f"{topics.prefix}worker"  # the Faust app id (processor.runtime.worker.Worker), version 1
    consumed = [topics.workflow_events, topics.metrics, topics.stats_changes]
    written = [topics.execution_state, topics.workflow_stats, topics.metric_rollups, topics.dead_letter,
               topics.stats_changes, topics.metrics]
    changelogs = [f"{group}-{table}-changelog" for table in ("executions", "tenant-stats", "windows")]
    probe = GroupProbe(bootstrap, group)
    await probe.start()
    try:
        source_tps = _partitions([source], config.partitions)
        target = await probe.end_offsets(source_tps)
        before = await probe.end_offsets(_partitions(written, config.partitions))  # metrics: the source itself
        log = workdir / "worker.log"
        cmd = [sys.executable, "-m", "processor.cli", "worker", "--bootstrap", bootstrap,
               "--topic-prefix", topics.prefix, "--partitions", str(config.partitions),
               "--grace-ms", str(config.grace_ms)]
        began = now()
        proc = _launch(cmd, workdir, log)
        spy = start_profiler(proc.pid, profile) if profile is not None else None
        try:
            result = await _watch(probe, proc, began, log, config, target, consumed, written, before, changelogs,
                                  profile)
            if RESTART_NOTICE in log.read_text(errors="replace"):  # its figures would measure a recovery
                raise BenchError(f"the worker restarted itself:\n{_log_tail(log)}")
            return result
        finally:
            _stop(proc)
            if spy is not None:
                stop_profiler(spy)
    finally:
        await probe.stop()


async def _watch(
    probe: GroupProbe,
    proc: subprocess.Popen[bytes],
    began: float,
    log: Path,
    config: WorkerBenchConfig,
    target: dict[TopicPartition, int],
    consumed: list[str],
    written: list[str],
    before: dict[TopicPartition, int],
    changelogs: list[str],
    profile: Path | None,
) -> WorkerRunResult:
    """Poll until caught up, then until drained; the figures of the run."""
    total = sum(target.values())
    limit = config.deadline_s(total)
    deadline = began + limit
    progress = (-1, now())  # (sum of committed offsets, when it last changed)

    def check(committed: dict[TopicPartition, int]) -> None:
        """Fail fast when the worker is gone, late, or stuck (an agent that crashed leaves the
        process running, but nothing is committed any more)."""
        nonlocal progress
        if proc.poll() is not None:
            raise BenchError(f"the worker exited with code {proc.returncode}:\n{_log_tail(log)}")
        if now() > deadline:
            raise BenchError(f"the worker did not finish within {limit:.0f} s "
                             f"(group {probe.group}):\n{_log_tail(log)}")
        moved = sum(committed.values())
        if moved != progress[0]:
            progress = (moved, now())
        elif now() - progress[1] > config.stall_s:
            raise BenchError(f"the worker committed nothing for {config.stall_s:.0f} s "
                             f"(group {probe.group}, {moved} offsets committed):\n{_log_tail(log)}")

    startup: float | None = None
    at_startup = 0
    outputs = _partitions(written, config.partitions)
    while True:
        committed = await probe.committed()
        check(committed)
        t = now() - began
        done = sum(min(committed.get(tp, 0), end) for tp, end in target.items())
        if startup is None:
            working = any(offset > 0 for offset in committed.values())
            if not working:
                present = await probe.topic_names()
                known = {tp.topic for tp in outputs}
                outputs += _partitions([c for c in changelogs if c in present and c not in known], config.partitions)
                ends = await probe.end_offsets(outputs)
                working = any(end > before.get(tp, 0) for tp, end in ends.items())
                t = now() - began
            if working:
                startup, at_startup = t, done
        if done >= total:
            caught_up = t
            break
        await asyncio.sleep(0.1 if startup is None else 0.25)

    consumed_tps = _partitions(consumed, config.partitions)
    while True:
        ends = await probe.end_offsets(consumed_tps)
        committed = await probe.committed()
        check(committed)
        if all(committed.get(tp, 0) >= end for tp, end in ends.items()):
            drained = now() - began
            break
        await asyncio.sleep(0.25)

    peak, cpu = peak_rss_kib(proc.pid), cpu_seconds(proc.pid)
    after = await probe.end_offsets(_partitions(written, config.partitions))
    wrote_to: Counter[str] = Counter()
    for tp, end in after.items():
        wrote_to[tp.topic] += end - before.get(tp, 0)
    exit_code = await asyncio.to_thread(_stop, proc)
    return WorkerRunResult(
        events=total, startup_s=startup or caught_up, committed_at_startup=at_startup, caught_up_s=caught_up,
        drained_s=drained, peak_rss_kib=peak, cpu_s=cpu, exit_code=exit_code,
        outputs=tuple((t, wrote_to[t]) for t in written), profile=profile,
    )


# -- the whole benchmark -----------------------------------------------------------------------


async def run_mix(bootstrap: str, mix: str, n: int, config: WorkerBenchConfig, workdir: Path) -> MixResult:
    """One mix of ``n`` events on fresh topics, deleted again afterwards."""
    start_ms = int(time.time() * 1000) - 2 * HOUR_MS
    events, executions = mix_events(mix, n, config, start_ms)
    prefix = unique_prefix(f"worker-{mix}")
    topics = await create_contract_topics(bootstrap, prefix, config.partitions)
    try:
        source = topics.workflow_events if mix == "lifecycle" else topics.metrics
        produce_s = await publish(bootstrap, topics, events)
        base = await baseline(bootstrap, source, config.partitions, len(events), config.deadline_s(len(events)),
                              config.baseline_runs)
        mixdir = workdir / mix
        mixdir.mkdir(parents=True, exist_ok=True)
        floors = [await faust_floor(bootstrap, source, config.partitions, len(events), config.deadline_s(len(events)),
                                    config.floor_run_count, mixdir / "floor", tuned=tuned, inbox=inbox)
                  for tuned, inbox in ((False, False), (True, False), (False, True))]
        profile = config.profile_dir / f"worker-{mix}.collapsed.txt" if config.profile_dir is not None else None
        worker = await run_worker(bootstrap, topics, source, config, mixdir, profile)
        if profile is not None and profile.exists():
            profile.with_name(f"worker-{mix}.top.txt").write_text(summarize(profile).text())
        return MixResult(mix, len(events), executions, produce_s, base, floors[0], floors[1], floors[2], worker)
    finally:
        await delete_topics_with_prefix(bootstrap, prefix)


async def run_worker_bench(bootstrap: str, config: WorkerBenchConfig, workdir: Path) -> WorkerBenchResult:
    """Every mix of ``config``, one after another, on the broker at ``bootstrap``."""
    unknown = [m for m, _ in config.mixes if m not in MIXES]
    if unknown:
        raise BenchError(f"unknown mix(es) {unknown}; known: {sorted(MIXES)}")
    results = []
    for mix, n in config.mixes:
        results.append(await run_mix(bootstrap, mix, n, config, workdir))
    memory = [await run_memory(bootstrap, n, config, workdir) for n in config.memory_sizes]
    return WorkerBenchResult(config, tuple(results), tuple(memory))


@dataclass(frozen=True, slots=True)
class MemoryResult:
    """One long-span lifecycle run (see ``WorkerBenchConfig.memory_sizes``)."""

    events: int
    span_h: float
    worker: WorkerRunResult


async def run_memory(bootstrap: str, n: int, config: WorkerBenchConfig, workdir: Path) -> MemoryResult:
    """``n`` lifecycle events spread over ``n / memory_density_per_h`` hours of event time
    (ending two hours ago), through the worker alone."""
    span_ms = max(HOUR_MS, int(n / config.memory_density_per_h * HOUR_MS))
    long = dataclasses.replace(config, span_ms=span_ms)
    start_ms = int(time.time() * 1000) - 2 * HOUR_MS - span_ms
    events, _ = mix_events("lifecycle", n, long, start_ms)
    prefix = unique_prefix("worker-memory")
    topics = await create_contract_topics(bootstrap, prefix, config.partitions)
    try:
        await publish(bootstrap, topics, events)
        rundir = workdir / f"memory-{n}"
        rundir.mkdir(parents=True, exist_ok=True)
        worker = await run_worker(bootstrap, topics, topics.workflow_events, long, rundir)
        return MemoryResult(len(events), span_ms / HOUR_MS, worker)
    finally:
        await delete_topics_with_prefix(bootstrap, prefix)


def run(ctx: BenchContext) -> Report:
    """The registered entry point: full or quick sizes, or ``ctx.events`` for every mix."""
    if ctx.events is not None:
        config = WorkerBenchConfig.sized(ctx.events, profile_dir=ctx.profile_dir, floor_runs=1 if ctx.quick else None)
    else:
        config = WorkerBenchConfig(mixes=QUICK_SIZES if ctx.quick else FULL_SIZES, profile_dir=ctx.profile_dir,
                                   floor_runs=1 if ctx.quick else None, memory_sizes=() if ctx.quick else (20_000, 60_000))
    result = asyncio.run(run_worker_bench(ctx.bootstrap, config, ctx.workdir / "worker"))
    return result.report()


BENCHMARK = Benchmark("worker", "Worker throughput", run)
