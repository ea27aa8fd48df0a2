"""Producer SDK cost: what one call costs the caller, and how many events per second end up
acknowledged, next to raw ``aiokafka`` sends of the same bytes in the same run.

Two call scripts, each N calls after a warm-up:

- ``record()``: metric samples, ``record(metric_type, value, unit=, labels=, tenant_id=)``
  over four metric types, 24 label sets and five tenants;
- lifecycle: executions of ``start_execution``, four times ``start_step`` + ``complete_step``
  (tokens, cost, sizes), then ``complete_execution``: ten calls per execution, the last
  execution cut off at N.

Each script runs through five implementations, each of the four that send on its own fresh
contract topics (a unique prefix), one after another in this process:

1. **SDK build+encode (no send)**: the SDK's work before aiokafka, alone: the call's event
   built and validated by :class:`producers.factory.EventFactory`, routed by
   :func:`producers.client.route` and encoded by :func:`schemas.codec.encode_event`, the
   results dropped;
2. **raw aiokafka send** (the baseline): one ``AIOKafkaProducer`` with the SDK's settings
   (acks=all, idempotence, lz4, ``linger_ms`` and ``max_batch_size`` of
   :class:`producers.client.ProducerConfig`, and its partitioner
   :func:`producers.client.partition_for`),
   ``await producer.send(topic, value, key=key)`` of the same calls' (topic, key, value),
   built the same way before the clock starts, then ``await producer.flush()``;
3. **raw aiokafka, default partitioner**: the same, with aiokafka's default partitioner (what a
   plain aiokafka producer pays);
4. **SDK async**: :class:`producers.AxmonProducer`, ``await monitor.record(...)`` and so on;
5. **SDK sync facade**: :class:`producers.SyncAxmonProducer` called from the main thread (its
   own event loop runs in its background thread).

Every call is timed alone with ``time.perf_counter_ns``; nothing is flushed between calls. The
throughput is the events acknowledged over the time from the first timed call to the end of
the final flush (the flush is also reported alone).
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from bench.common import (
    BenchContext,
    BenchError,
    Benchmark,
    Figure,
    Report,
    create_contract_topics,
    delete_topics_with_prefix,
    now,
    rate,
    unique_prefix,
)
from bench.profiling import SAMPLE_RATE, py_spy, summarize
from producers import AxmonProducer, ProducerConfig, SyncAxmonProducer
from producers.client import route
from producers.factory import EventFactory
from schemas.codec import encode_event
from schemas.ids import uuid7
from schemas.partitioning import partition_for
from schemas.topics import Topics

FULL_CALLS = 50_000
QUICK_CALLS = 2_000
ORIGINAL_CLAIM_US = 100.0
"""The original design's "record metric (buffered): < 0.1 ms" and "event emission: < 0.1 ms"."""

SDK_ASYNC = "SDK async"
SDK_SYNC = "SDK sync facade"
RAW = "raw aiokafka send"
RAW_DEFAULT = "raw aiokafka, default partitioner"
BUILD = "SDK build+encode (no send)"
IMPLEMENTATIONS = (SDK_ASYNC, SDK_SYNC, RAW, RAW_DEFAULT, BUILD)
"""The report's columns, in this order."""
SCRIPTS = ("record()", "lifecycle")

_METRIC_TYPES = ("api.request.duration", "workflow.step.duration", "database.query.duration", "cache.hit_rate")
_SERIES_LABELS = tuple(
    {"endpoint": f"/v1/items/{k % 12}", "method": ("GET", "POST")[k // 12], "status": "200"} for k in range(24)
)


# -- the call scripts --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    metric_type: str
    value: float
    unit: str
    labels: dict[str, str]
    tenant_id: str


@dataclass(frozen=True, slots=True)
class StartExecution:
    workflow_id: str
    workflow_name: str
    tenant_id: str
    user_id: str
    steps_total: int
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StartStep:
    step_key: str
    step_name: str


@dataclass(frozen=True, slots=True)
class CompleteStep:
    tokens_used: int
    cost: float
    input_size: int
    output_size: int


@dataclass(frozen=True, slots=True)
class CompleteExecution:
    pass


Op = Record | StartExecution | StartStep | CompleteStep | CompleteExecution
"""One SDK call; steps and completions apply to the execution and step started last."""


def metric_ops(n: int, tenants: int, offset: int = 0) -> list[Op]:
    """``n`` ``record()`` calls (deterministic; ``offset`` shifts the values)."""
    ops: list[Op] = []
    for i in range(offset, offset + n):
        ops.append(Record(_METRIC_TYPES[i % len(_METRIC_TYPES)], ((i * 7919) % 50_000) / 10, "ms",
                          _SERIES_LABELS[i % len(_SERIES_LABELS)], f"tenant_{i % tenants}"))
    return ops


def lifecycle_ops(n: int, tenants: int, steps: int, offset: int = 0) -> list[Op]:
    """``n`` lifecycle calls: whole executions of ``2 * steps + 2`` calls, the last one cut off."""
    ops: list[Op] = []
    e = offset
    while len(ops) < n:
        ops.append(StartExecution(f"wf_{e % 7}", "Code Review Workflow", f"tenant_{e % tenants}", f"user_{e % 13}",
                                  steps, {"pr": f"#{e}", "author": "bob"}))
        for s in range(steps):
            ops.append(StartStep(f"step_{s}", f"Step {s}"))
            ops.append(CompleteStep(1_500 + s, 0.003, 5_000, 1_200))
        ops.append(CompleteExecution())
        e += 1
    return ops[:n]


def script_ops(script: str, n: int, config: ProducerBenchConfig, offset: int = 0) -> list[Op]:
    if script == "record()":
        return metric_ops(n, config.tenants, offset)
    return lifecycle_ops(n, config.tenants, config.steps, offset)


class SyncMonitor(Protocol):
    """The calls the scripts make, synchronously: the sync facade, or :class:`Encoder`."""

    def start_execution(self, workflow_id: str, workflow_name: str, tenant_id: str, user_id: str,
                        steps_total: int, metadata: dict[str, Any] | None = None) -> str: ...

    def start_step(self, execution_id: str, step_key: str, step_name: str) -> str: ...

    def complete_step(self, step_id: str, *, tokens_used: int | None = None, cost: float | None = None,
                      input_size: int | None = None, output_size: int | None = None) -> None: ...

    def complete_execution(self, execution_id: str) -> None: ...

    def record(self, metric_type: str, value: float, *, unit: str = "", labels: dict[str, str] | None = None,
               tenant_id: str | None = None) -> None: ...


def drive_sync(monitor: SyncMonitor, ops: Sequence[Op], timings: list[int]) -> None:
    """Make every call of ``ops``, appending each one's wall time (ns) to ``timings``."""
    clock = time.perf_counter_ns
    append = timings.append
    execution = step = ""
    for op in ops:
        if type(op) is Record:
            t0 = clock()
            monitor.record(op.metric_type, op.value, unit=op.unit, labels=op.labels, tenant_id=op.tenant_id)
            t1 = clock()
        elif type(op) is StartExecution:
            t0 = clock()
            execution = monitor.start_execution(op.workflow_id, op.workflow_name, op.tenant_id, op.user_id,
                                                op.steps_total, op.metadata)
            t1 = clock()
        elif type(op) is StartStep:
            t0 = clock()
            step = monitor.start_step(execution, op.step_key, op.step_name)
            t1 = clock()
        elif type(op) is CompleteStep:
            t0 = clock()
            monitor.complete_step(step, tokens_used=op.tokens_used, cost=op.cost, input_size=op.input_size,
                                  output_size=op.output_size)
            t1 = clock()
        else:
            t0 = clock()
            monitor.complete_execution(execution)
            t1 = clock()
        append(t1 - t0)


async def drive_async(monitor: AxmonProducer, ops: Sequence[Op], timings: list[int]) -> None:
    """:func:`drive_sync` for the async SDK: every call awaited, as a user would."""
    clock = time.perf_counter_ns
    append = timings.append
    execution = step = ""
    for op in ops:
        if type(op) is Record:
            t0 = clock()
            await monitor.record(op.metric_type, op.value, unit=op.unit, labels=op.labels, tenant_id=op.tenant_id)
            t1 = clock()
        elif type(op) is StartExecution:
            t0 = clock()
            execution = await monitor.start_execution(op.workflow_id, op.workflow_name, op.tenant_id, op.user_id,
                                                      op.steps_total, op.metadata)
            t1 = clock()
        elif type(op) is StartStep:
            t0 = clock()
            step = await monitor.start_step(execution, op.step_key, op.step_name)
            t1 = clock()
        elif type(op) is CompleteStep:
            t0 = clock()
            await monitor.complete_step(step, tokens_used=op.tokens_used, cost=op.cost, input_size=op.input_size,
                                        output_size=op.output_size)
            t1 = clock()
        else:
            t0 = clock()
            await monitor.complete_execution(execution)
            t1 = clock()
        append(t1 - t0)


class Encoder:
    """The SDK's calls up to the hand-over to aiokafka: build and validate the event, route it,
    encode it; with ``keep``, keeps the (topic, key, value) of every call in ``messages``.

    Keeping them costs page faults as the heap grows (some µs per call on a VM), which the SDK,
    whose messages are copied into aiokafka's batches and freed, does not pay: a timed pass
    keeps nothing."""

    def __init__(self, topics: Topics, *, keep: bool) -> None:
        self.topics = topics
        self.events = EventFactory()
        self.keep = keep
        self.messages: list[tuple[str, bytes, bytes]] = []

    def _keep(self, event: Any) -> None:
        topic, key = route(event, self.topics)
        value = encode_event(event)
        if self.keep:
            self.messages.append((topic, key, value))

    def start_execution(self, workflow_id: str, workflow_name: str, tenant_id: str, user_id: str,
                        steps_total: int, metadata: dict[str, Any] | None = None) -> str:
        event = self.events.start_execution(workflow_id, workflow_name, tenant_id, user_id, steps_total, metadata)
        self._keep(event)
        return event.execution_id

    def start_step(self, execution_id: str, step_key: str, step_name: str) -> str:
        event = self.events.start_step(execution_id, step_key, step_name)
        self._keep(event)
        return event.step_id

    def complete_step(self, step_id: str, *, tokens_used: int | None = None, cost: float | None = None,
                      input_size: int | None = None, output_size: int | None = None) -> None:
        self._keep(self.events.step_event("step.completed", step_id, tokens_used=tokens_used, cost=cost,
                                          input_size=input_size, output_size=output_size))

    def complete_execution(self, execution_id: str) -> None:
        self._keep(self.events.end_execution("execution.completed", execution_id))

    def record(self, metric_type: str, value: float, *, unit: str = "", labels: dict[str, str] | None = None,
               tenant_id: str | None = None) -> None:
        self._keep(self.events.record(metric_type, value, unit=unit, labels=labels, tenant_id=tenant_id))


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latency:
    """Per-call wall times, microseconds."""

    calls: int
    median_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float
    over_claim: float
    """Share of the calls slower than the original design's 0.1 ms."""

    @classmethod
    def of(cls, timings_ns: Sequence[int]) -> Latency:
        ordered = sorted(timings_ns)
        n = len(ordered)
        if n == 0:
            raise BenchError("no calls were timed")

        def q(p: float) -> float:  # nearest rank
            return ordered[min(n - 1, max(0, math.ceil(p * n) - 1))] / 1_000

        over = sum(1 for t in ordered if t > ORIGINAL_CLAIM_US * 1_000)
        return cls(n, q(0.5), q(0.99), q(0.999), ordered[-1] / 1_000, sum(ordered) / n / 1_000, over / n)


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One script through one implementation."""

    implementation: str
    script: str
    latency: Latency
    calling_s: float
    """First timed call to the last one's return."""
    flush_s: float = 0.0
    """The final flush alone (0 where nothing is sent)."""
    acked: int = 0
    """Events the broker acknowledged (of the timed calls)."""
    value_bytes: int = 0
    """Sum of the encoded events' sizes (the baseline's)."""

    @property
    def total_s(self) -> float:
        return self.calling_s + self.flush_s

    @property
    def events_per_s(self) -> float:
        """Acknowledged events over first call -> end of the final flush."""
        return rate(self.acked, self.total_s)

    @property
    def calls_per_s(self) -> float:
        return rate(self.latency.calls, self.calling_s)


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Medians (µs) of the parts of one SDK ``record()`` call, each timed alone."""

    uuid7_us: float
    factory_us: float
    """``EventFactory.record``: the event built and validated (``uuid7`` included)."""
    route_us: float
    encode_us: float
    murmur2_series_us: float
    """aiokafka's murmur2 (pure Python) of one series key, uncached."""
    murmur2_execution_us: float
    """The same of one execution id."""
    series_key_bytes: float
    """Mean length of the series keys."""


@dataclass(frozen=True, slots=True)
class ProducerBenchConfig:
    calls: int = FULL_CALLS
    """Timed calls per script and implementation."""
    warmup: int = 2_000
    """Untimed calls first (connections, metadata, code paths), then a flush."""
    partitions: int = 4
    tenants: int = 5
    steps: int = 4
    """Steps per simulated execution of the lifecycle script."""
    flush_timeout_s: float = 120.0
    profile_dir: Path | None = None
    """When set, the SDK cases run once more (untimed) under ``py-spy record``; profiles here."""

    @classmethod
    def sized(cls, calls: int, *, profile_dir: Path | None = None) -> ProducerBenchConfig:
        return cls(calls=calls, warmup=min(2_000, max(100, calls // 10)), profile_dir=profile_dir)


@dataclass(frozen=True, slots=True)
class ProducerBenchResult:
    config: ProducerBenchConfig
    cases: tuple[CaseResult, ...]
    breakdown: Breakdown
    profiles: tuple[tuple[str, Path], ...] = field(default_factory=tuple)
    """(case, collapsed py-spy stacks) of the profiled passes."""

    def case(self, implementation: str, script: str) -> CaseResult:
        for c in self.cases:
            if c.implementation == implementation and c.script == script:
                return c
        raise KeyError((implementation, script))

    def report(self) -> Report:
        figures: list[Figure] = []
        for script in SCRIPTS:
            raw = self.case(RAW, script)
            for impl in IMPLEMENTATIONS:
                c = self.case(impl, script)
                lat = c.latency
                figures += [
                    Figure(impl, f"{script} per call: median", lat.median_us, "µs", 1),
                    Figure(impl, f"{script} per call: p99", lat.p99_us, "µs", 1),
                    Figure(impl, f"{script} per call: p99.9", lat.p999_us, "µs", 1),
                    Figure(impl, f"{script} per call: max", lat.max_us, "µs", 0),
                    Figure(impl, f"{script} per call: mean", lat.mean_us, "µs", 1),
                    Figure(impl, f"{script} calls over 0.1 ms", lat.over_claim * 100, "%", 2),
                ]
                if impl != RAW:
                    figures += [
                        Figure(impl, f"{script} median / raw send", lat.median_us / raw.latency.median_us, "x", 2),
                        Figure(impl, f"{script} p99 / raw send", lat.p99_us / raw.latency.p99_us, "x", 2),
                    ]
                if impl == BUILD:
                    continue
                figures += [
                    Figure(impl, f"{script} calling time", c.calling_s, "s", 2),
                    Figure(impl, f"{script} final flush", c.flush_s * 1_000, "ms", 1),
                    Figure(impl, f"{script} acked events/s (first call to flushed)", c.events_per_s, "events/s"),
                ]
                if impl != RAW:
                    figures.append(Figure(impl, f"{script} events/s / raw send", c.events_per_s / raw.events_per_s,
                                          "x", 2))
        return Report(BENCHMARK.name, BENCHMARK.title, self.method(), tuple(figures), tuple(self.notes()))

    def method(self) -> str:
        c = self.config
        pc = ProducerConfig()
        return METHOD.format(calls=c.calls, warmup=c.warmup, partitions=c.partitions, tenants=c.tenants,
                             steps=c.steps, per_execution=2 * c.steps + 2, linger=pc.linger_ms,
                             batch=pc.max_batch_size // 1024, compression=pc.compression)

    def notes(self) -> list[str]:
        out = []
        for script in SCRIPTS:
            a, s, r = (self.case(i, script) for i in (SDK_ASYNC, SDK_SYNC, RAW))
            out.append(
                f"{script}: the original design claimed < 0.1 ms per buffered call (an in-memory buffer "
                f"flushed to SQLite). Here the async SDK takes {a.latency.median_us:.1f} µs median, "
                f"{a.latency.p99_us:.1f} µs p99 ({a.latency.over_claim:.2%} of calls over 0.1 ms); the sync "
                f"facade {s.latency.median_us:.1f} µs median, {s.latency.p99_us:.1f} µs p99 "
                f"({s.latency.over_claim:.2%} over); raw aiokafka send {r.latency.median_us:.1f} µs median. "
                f"Events average {r.value_bytes / max(1, r.latency.calls):.0f} bytes encoded.")
        b = self.breakdown
        a, r, e = (self.case(i, "record()") for i in (SDK_ASYNC, RAW, BUILD))
        rest = a.latency.median_us - e.latency.median_us - r.latency.median_us
        out.append(
            f"Where an async record() call's {a.latency.median_us:.1f} µs (median) go: building, validating, "
            f"routing and encoding the event {e.latency.median_us:.1f} µs (each part timed alone: "
            f"EventFactory.record {b.factory_us:.1f} µs, of which uuid7 {b.uuid7_us:.1f} µs and the rest "
            f"parse_event's field checks and the frozen dataclass; route/series key {b.route_us:.1f} µs; "
            f"encode_event {b.encode_us:.1f} µs), aiokafka's send {r.latency.median_us:.1f} µs (the "
            f"baseline), and "
            + (f"{rest:.1f} µs the SDK's call layers and delivery tracking (a done-callback per message)."
               if rest >= 0 else "the SDK's call layers and delivery tracking (the medians, each of a "
               "separate pass, do not add up: the difference is within their noise)."))
        d = self.case(RAW_DEFAULT, "record()")
        out.append(
            f"The SDK and the baseline partition with the SDK's partition_for: Kafka's murmur2 with the hash "
            f"of recent keys cached. aiokafka's default partitioner computes murmur2 in pure Python on every "
            f"send: {b.murmur2_series_us:.1f} µs for a series key ({b.series_key_bytes:.0f} bytes), "
            f"{b.murmur2_execution_us:.1f} µs for an execution id (timed alone), which is why a plain "
            f"aiokafka producer (the default-partitioner column) takes {d.latency.median_us:.1f} µs per "
            f"record() send against the baseline's {r.latency.median_us:.1f} µs.")
        out.append(
            "The sync facade's caller builds and encodes each event and hands it to the facade's loop "
            "thread without waiting for it (a list under a lock; one loop wake-up carries every event "
            "handed over until it runs). Both threads share the GIL: the caller's median is its own work, "
            "its p99 and max are waits while the sender thread holds the GIL (up to the interpreter's 5 ms "
            "switch interval at a time, and the caller gives the GIL up at every system call, such as "
            "uuid7's os.urandom).")
        out.append(
            "In the async cases nothing yields to the event loop between calls unless a partition's batch "
            "is full (aiokafka's send() only suspends then): such a call waits for the batch to drain, "
            "which is what the p99.9 and max show; an application that awaits other I/O between calls "
            "sees fewer such waits.")
        for label, path in self.profiles:
            if path.exists():
                summary = summarize(path, top=8)
                hot = "; ".join(f"{e.function} {e.self_share:.0%}" for e in summary.by_self)
                out.append(f"{label}: profiled with py-spy in a separate untimed pass ({path}); most self time: "
                           f"{hot}")
        return out


METHOD = """\
Two call scripts of N = {calls:,} calls each, after {warmup:,} untimed warm-up calls and a flush:
**`record()`**: metric samples over 4 metric types, 24 label sets and {tenants} tenants;
**lifecycle**: executions of `start_execution`, {steps} x (`start_step`, `complete_step` with tokens,
cost and sizes), `complete_execution` ({per_execution} calls each, all kinds timed together).
Each call is timed alone with `time.perf_counter_ns()` around it; nothing is flushed between
calls; the producer buffers as configured. Columns:
**SDK async**: `AxmonProducer`, every call `await`ed in one loop, as a user would;
**SDK sync facade**: `SyncAxmonProducer` (the original design's API shape) called from the main
thread; its event loop runs in its own background thread;
**raw aiokafka send** (the baseline): `await producer.send(topic, value, key=key)` of the *same*
events, pre-encoded before the clock starts (`EventFactory`, `route`, `encode_event`), on one
`AIOKafkaProducer` with the SDK's settings (acks=all, idempotence, {compression},
`linger_ms={linger}`, `max_batch_size` {batch} KiB, its partitioner `partition_for`);
**raw aiokafka, default partitioner**: the same with aiokafka's `DefaultPartitioner`;
**SDK build+encode (no send)**: the SDK's work before aiokafka alone (the event built and
validated, routed, encoded; the result dropped).
Ratios are to the baseline. Each sending case writes to its own fresh contract topics ({partitions} partitions). *Acked
events/s* is the events the broker acknowledged over the time from the first timed call to the
end of the final `flush()`; *final flush* is that flush alone. Percentiles are nearest-rank over
the N calls; garbage collection stays on. Broker and benchmark share the machine's cores."""


# -- the cases ---------------------------------------------------------------------------------


def encode_ops(topics: Topics, ops: Sequence[Op]) -> list[tuple[str, bytes, bytes]]:
    """The (topic, key, value) the SDK would send for ``ops``: the baseline's messages."""
    encoder = Encoder(topics, keep=True)
    drive_sync(encoder, ops, [])
    return encoder.messages


def run_build(topics: Topics, warm_ops: Sequence[Op], ops: Sequence[Op], script: str) -> CaseResult:
    """The build+encode case: ``ops`` built, routed and encoded, nothing kept."""
    encoder = Encoder(topics, keep=False)
    drive_sync(encoder, warm_ops, [])
    timings: list[int] = []
    began = now()
    drive_sync(encoder, ops, timings)
    calling = now() - began
    return CaseResult(BUILD, script, Latency.of(timings), calling)


def _kafka_producer(bootstrap: str, *, sdk_partitioner: bool) -> AIOKafkaProducer:
    """An aiokafka producer with the SDK's settings (see ``AxmonProducer.start``), its
    partitioner too unless ``sdk_partitioner`` is false (then aiokafka's default)."""
    c = ProducerConfig(bootstrap=bootstrap)
    options: dict[str, Any] = {"partitioner": partition_for} if sdk_partitioner else {}
    return AIOKafkaProducer(
        bootstrap_servers=c.bootstrap, client_id="axmon-bench-raw", acks="all", enable_idempotence=True,
        compression_type=c.compression, linger_ms=c.linger_ms, max_batch_size=c.max_batch_size,
        request_timeout_ms=c.request_timeout_ms, **options,
    )


async def run_raw(bootstrap: str, warm: Sequence[tuple[str, bytes, bytes]],
                  messages: Sequence[tuple[str, bytes, bytes]], script: str, timeout_s: float,
                  implementation: str = RAW) -> CaseResult:
    """``await send()`` of pre-encoded messages: :data:`RAW` or :data:`RAW_DEFAULT`."""
    kafka = _kafka_producer(bootstrap, sdk_partitioner=implementation == RAW)
    await kafka.start()
    try:
        for topic, key, value in warm:
            await kafka.send(topic, value, key=key)
        await asyncio.wait_for(kafka.flush(), timeout_s)
        clock = time.perf_counter_ns
        timings: list[int] = []
        futures: list[asyncio.Future[Any]] = []
        began = now()
        for topic, key, value in messages:
            t0 = clock()
            future = await kafka.send(topic, value, key=key)
            timings.append(clock() - t0)
            futures.append(future)
        called = now()
        await asyncio.wait_for(kafka.flush(), timeout_s)
        flushed = now()
    finally:
        await kafka.stop()
    acked = sum(1 for f in futures if f.done() and not f.cancelled() and f.exception() is None)
    if acked != len(messages):
        raise BenchError(f"{implementation}: {acked} of {len(messages)} events acknowledged")
    size = sum(len(v) for _, _, v in messages)
    return CaseResult(implementation, script, Latency.of(timings), called - began, flushed - called, acked, size)


def _sdk_config(bootstrap: str, topics: Topics, client_id: str) -> ProducerConfig:
    return ProducerConfig(bootstrap=bootstrap, topics=topics, client_id=client_id)


async def run_async_sdk(bootstrap: str, topics: Topics, warm_ops: Sequence[Op], ops: Sequence[Op], script: str,
                        timeout_s: float) -> CaseResult:
    async with AxmonProducer(config=_sdk_config(bootstrap, topics, "axmon-bench-sdk")) as monitor:
        await drive_async(monitor, warm_ops, [])
        await asyncio.wait_for(monitor.flush(), timeout_s)
        before = monitor.delivered
        timings: list[int] = []
        began = now()
        await drive_async(monitor, ops, timings)
        called = now()
        await asyncio.wait_for(monitor.flush(), timeout_s)
        flushed = now()
        acked = monitor.delivered - before
    if acked != len(ops):
        raise BenchError(f"SDK async: {acked} of {len(ops)} events acknowledged")
    return CaseResult(SDK_ASYNC, script, Latency.of(timings), called - began, flushed - called, acked)


def run_sync_sdk(bootstrap: str, topics: Topics, warm_ops: Sequence[Op], ops: Sequence[Op], script: str,
                 timeout_s: float) -> CaseResult:
    with SyncAxmonProducer(config=_sdk_config(bootstrap, topics, "axmon-bench-sync")) as monitor:
        drive_sync(monitor, warm_ops, [])
        monitor.flush(timeout_s)
        before = monitor.delivered
        timings: list[int] = []
        began = now()
        drive_sync(monitor, ops, timings)
        called = now()
        monitor.flush(timeout_s)
        flushed = now()
        acked = monitor.delivered - before
    if acked != len(ops):
        raise BenchError(f"SDK sync facade: {acked} of {len(ops)} events acknowledged")
    return CaseResult(SDK_SYNC, script, Latency.of(timings), called - began, flushed - called, acked)


def breakdown(ops: Sequence[Op], topics: Topics) -> Breakdown:
    """Time the parts of an SDK ``record()`` call one by one over the metric ops, and
    aiokafka's uncached murmur2 of the keys."""
    clock = time.perf_counter_ns
    records = [op for op in ops if type(op) is Record]
    factory = EventFactory()
    ids: list[int] = []
    built: list[int] = []
    routed: list[int] = []
    encoded: list[int] = []
    hashed: list[int] = []
    hashed_ids: list[int] = []
    key_bytes = 0
    for op in records:
        t0 = clock()
        execution_id = uuid7().encode()
        t1 = clock()
        event = factory.record(op.metric_type, op.value, unit=op.unit, labels=op.labels, tenant_id=op.tenant_id)
        t2 = clock()
        _, key = route(event, topics)
        t3 = clock()
        encode_event(event)
        t4 = clock()
        murmur2(key)
        t5 = clock()
        murmur2(execution_id)
        t6 = clock()
        ids.append(t1 - t0)
        built.append(t2 - t1)
        routed.append(t3 - t2)
        encoded.append(t4 - t3)
        hashed.append(t5 - t4)
        hashed_ids.append(t6 - t5)
        key_bytes += len(key)
    return Breakdown(Latency.of(ids).median_us, Latency.of(built).median_us, Latency.of(routed).median_us,
                     Latency.of(encoded).median_us, Latency.of(hashed).median_us, Latency.of(hashed_ids).median_us,
                     key_bytes / max(1, len(records)))


@contextmanager
def profiled(out: Path | None) -> Iterator[None]:
    """``py-spy record`` on this very process (every thread) while the block runs."""
    if out is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(
        [py_spy(), "record", "--pid", str(os.getpid()), "--rate", str(SAMPLE_RATE), "--format", "raw",
         "--nolineno", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # py-spy attaches
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(10)


# -- the whole benchmark -----------------------------------------------------------------------


def run_producer_bench(bootstrap: str, config: ProducerBenchConfig) -> ProducerBenchResult:
    """Every script through every implementation on fresh topics, deleted again afterwards."""
    if config.calls < 1:
        raise BenchError("the producer benchmark needs at least one call per script")
    prefixes = {impl: unique_prefix(f"producer-{tag}") for impl, tag in
                ((RAW, "raw"), (RAW_DEFAULT, "rawdefault"), (SDK_ASYNC, "async"), (SDK_SYNC, "sync"))}

    async def create() -> dict[str, Topics]:
        return {impl: await create_contract_topics(bootstrap, prefix, config.partitions)
                for impl, prefix in prefixes.items()}

    async def delete() -> None:
        for prefix in prefixes.values():
            await delete_topics_with_prefix(bootstrap, prefix)

    timeout = config.flush_timeout_s
    cases: list[CaseResult] = []
    profiles: list[tuple[str, Path]] = []
    try:
        topics = asyncio.run(create())
        for script in SCRIPTS:
            warm_ops = script_ops(script, config.warmup, config, offset=10_000_000)
            ops = script_ops(script, config.calls, config)
            cases.append(run_build(topics[RAW], warm_ops, ops, script))
            warm, messages = encode_ops(topics[RAW], warm_ops), encode_ops(topics[RAW], ops)
            cases.append(asyncio.run(run_raw(bootstrap, warm, messages, script, timeout)))
            rename = {getattr(topics[RAW], n): getattr(topics[RAW_DEFAULT], n) for n in ("workflow_events", "metrics")}
            cases.append(asyncio.run(run_raw(bootstrap, [(rename[t], k, v) for t, k, v in warm],
                                             [(rename[t], k, v) for t, k, v in messages], script, timeout,
                                             RAW_DEFAULT)))
            cases.append(asyncio.run(run_async_sdk(bootstrap, topics[SDK_ASYNC], warm_ops, ops, script, timeout)))
            cases.append(run_sync_sdk(bootstrap, topics[SDK_SYNC], warm_ops, ops, script, timeout))
            if config.profile_dir is not None:
                tag = "record" if script == "record()" else script
                for impl, label in ((SDK_ASYNC, "async"), (SDK_SYNC, "sync")):
                    path = config.profile_dir / f"producer-{label}-{tag}.collapsed.txt"
                    with profiled(path):
                        if impl == SDK_ASYNC:
                            asyncio.run(run_async_sdk(bootstrap, topics[SDK_ASYNC], warm_ops, ops, script, timeout))
                        else:
                            run_sync_sdk(bootstrap, topics[SDK_SYNC], warm_ops, ops, script, timeout)
                    if path.exists():
                        path.with_name(f"producer-{label}-{tag}.top.txt").write_text(summarize(path).text())
                    profiles.append((f"{impl}, {script}", path))
        parts = breakdown(script_ops("record()", min(config.calls, 20_000), config), topics[RAW])
    finally:
        asyncio.run(delete())
    return ProducerBenchResult(config, tuple(cases), parts, tuple(profiles))


def config_for(ctx: BenchContext) -> ProducerBenchConfig:
    if ctx.events is not None:
        return ProducerBenchConfig.sized(ctx.events, profile_dir=ctx.profile_dir)
    if ctx.quick:
        return ProducerBenchConfig.sized(QUICK_CALLS, profile_dir=ctx.profile_dir)
    return ProducerBenchConfig(profile_dir=ctx.profile_dir)


def run(ctx: BenchContext) -> Report:
    """The registered entry point: full or quick size, or ``ctx.events`` calls per script."""
    return run_producer_bench(ctx.bootstrap, config_for(ctx)).report()


BENCHMARK = Benchmark("producer", "Producer SDK: cost per call and throughput", run)
