"""The Faust runtime around the processing cores: ``axmon worker``.

Agents with concurrency 1 (Faust may commit past an in-flight message otherwise), each folding
the records of its topic in batches (``--batch-max`` records or what came within ``--batch-ms``,
an :class:`~processor.runtime.inbox.Inbox`, or with ``AXMON_INBOXES=0`` Faust's ``take_events``) into a :class:`~processor.runtime.writeback.WriteBack` over its table, then
writing each changed key once and publishing the batch's records coalesced
(:mod:`processor.runtime.coalesce`):

- ``lifecycle`` on ``axmon.workflow-events`` -> the ``executions`` table, publishing
  ``axmon.execution-state``, derived samples to ``axmon.metrics`` and contribution messages to
  the internal ``axmon.stats-changes`` (keyed by tenant);
- ``stats`` on ``axmon.stats-changes`` -> the ``tenant-stats`` table, publishing
  ``axmon.workflow-stats``;
- ``metrics`` on ``axmon.metrics`` -> the ``windows`` table, publishing
  ``axmon.metric-rollups`` (a timer publishes changed windows coalesced, and finals for windows
  idle past their close on the wall clock).

A record on a partition its key does not hash to (murmur2) is not folded there: the agent
forwards it to its home partition of the same topic (:mod:`processor.folds.routing`).

Bad input goes to ``axmon.dead-letter``. Tables hold raw bytes (orjson) and are written only by
assignment, inside the agents; every table is changelog-backed with the source's partitions.

The commit protocol, in the order it happens (Faust's at-least-once): the agent folds a batch,
writes each changed table entry once and sends its changelog records (framed per partition by a
write-ahead record; sent with the app's producer, not Faust's per-write path:
:class:`~processor.runtime.table_store.TableStore`), then its derived records; the
batch's records are acknowledged when the agent asks for the next batch; Faust's commit loop
flushes the producer, then commits the source offsets. A crash
before the commit redelivers the event; the entry's stored offset marks it as applied, and the
core publishes its current state again. A record the producer gives up on crashes the worker.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import faust
import orjson

from processor.folds.alerting import Ack, AlertCore
from processor.folds.config import FoldConfig
from processor.folds.decode import decode_input
from processor.folds.lifecycle_core import LifecycleCore
from processor.folds.metrics_core import MetricsCore
from processor.folds.records import (
    Emit,
    Keyspace,
    Origin,
    Stream,
    dead_letter,
    origin_of,
)
from processor.folds.routing import Router
from processor.folds.rules import RuleSet
from processor.folds.stats_core import StatsCore
from processor.runtime.admin import TopicSpec, group_offsets, wait_for_broker
from processor.runtime.assignment import Assignment
from processor.runtime.coalesce import coalesce
from processor.runtime.collector import FOLDING_THRESHOLDS
from processor.runtime.faust_app import app_options
from processor.runtime.faust_patches import consumer_bookkeeping, patch_faust, patch_faust_inboxes, task_stacks
from processor.runtime.inbox import Inbox
from processor.runtime.metrics_collectors import serve_worker_metrics
from processor.runtime.metrics_export import MetricsAddress
from processor.runtime.stall import Progress, StallState, observe, stalled_for
from processor.runtime.state_dir import default_state_dir
from processor.runtime.status_reporter import ErrorRecorder, Observed, StatusReporter
from processor.runtime.table_store import TableStore
from processor.runtime.worker_status import stall_state
from processor.runtime.writeback import WriteBack
from processor.settings import Settings
from schemas.errors import AxmonError
from schemas.events import Event, LifecycleEvent, MetricRecorded
from schemas.topics import Topics

log = logging.getLogger(__name__)

class Worker:
    """Builds the Faust app for one :class:`Settings` and wires the cores into it."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        fold: FoldConfig | None = None,
        *,
        rules: RuleSet = RuleSet(),
        hang_after: int | None = None,
        crash: str | None = None,
    ) -> None:
        self.settings = settings
        self._hang_after = hang_after
        """A fault for tests: the lifecycle agent stops for good after this many events."""
        self._crash = crash
        """A fault for tests: ``agent``: the lifecycle agent raises on every event; ``timer``: the
        rollup timer raises (Faust stops the worker: a crash loop)."""
        self.reporter: StatusReporter | None = None
        self.stall_seen: tuple[float, int] | None = None
        """The watchdog's last judgement: (seconds nothing was committed while records wait, records waiting)."""
        self.bootstrap = bootstrap
        self.topics = settings.topics
        self.fold = fold or settings.fold
        n = settings.partitions
        patch_faust()
        if inboxes_enabled():
            patch_faust_inboxes()
        self.errors = ErrorRecorder()
        """Logged exceptions -> the heartbeat's last error (Faust sets the root logger's handlers)."""
        self.state_dir = settings.state_dir or default_state_dir(self.topics.prefix)
        self.app = app = faust.App(f"{self.topics.prefix}worker", **app_options(bootstrap, n, settings.compression), datadir=str(self.state_dir),
                                   loghandlers=[self.errors])
        source: dict[str, Any] = {"partitions": n, "key_type": bytes, "value_type": bytes, "internal": False}
        self.events_topic = app.topic(self.topics.workflow_events, **source)
        self.metrics_topic = app.topic(self.topics.metrics, **source)
        self.stats_topic = app.topic(self.topics.stats_changes, **source)
        table: dict[str, Any] = {"partitions": n, "key_type": bytes, "value_type": bytes}  # app serializers: raw
        self.executions = app.Table(TABLES[0], **table)
        self.tenant_stats = app.Table(TABLES[1], **table)
        self.windows = app.Table(TABLES[2], **table)
        router = Router(n)  # one for both source topics (co-partitioned): one warning per source
        # Each table behind a write-back: the agents fold a batch of records, then write each
        # key once (a partition's writes all or nothing: processor.runtime.writeback).
        self._stores = (TableStore(self.executions), TableStore(self.tenant_stats), TableStore(self.windows))
        self.execution_writes, self.stats_writes, self.window_writes = (WriteBack(store) for store in self._stores)
        self.lifecycle = LifecycleCore(
            self.execution_writes, self.fold, clock=lambda: int(time.time() * 1000), stale_after_ms=settings.stale_after_ms,
            router=router, defer_states=True,
        )
        self.stats = StatsCore(self.stats_writes)
        # Alert states live in the windows table, under their own keys: a window's closing and
        # the alert states it moves must persist together.
        self.alerts = AlertCore(Keyspace(self.window_writes, ALERT_KEYS), rules)
        self.metrics = MetricsCore(Keyspace(self.window_writes, exclude=(ALERT_KEYS,)), self.fold, self.alerts, router=router, defer_windows=self.window_writes)
        self.batch_max = settings.batch_max
        self.batch_within_s = settings.batch_ms / 1000
        self.batches: dict[str, int] = {}
        """Agent -> batches folded (the heartbeat's counters)."""
        self.consumed: dict[str, int] = {}  # agent -> records it took from its topic (counted per batch)
        self.produced: dict[str, int] = {}  # topic -> records sent to it
        self.on_batch: Callable[[str, int, float], None] | None = None
        """(agent, records, seconds to fold and write them) after each batch: the metrics."""
        self.acks_topic = app.topic(self.topics.alert_acks, **source)
        self.ticks_topic = app.topic(self.topics.liveness_ticks, **source)
        self.dead_letters: dict[str, int] = {}
        self._recovered = False
        self._rolled_windows = False
        self.started = False
        """Faust has finished starting (its first recovery): the watchdog's normal limit applies."""
        self._destinations = {
            Stream.EXECUTION_STATE: self.topics.execution_state,
            Stream.WORKFLOW_STATS: self.topics.workflow_stats,
            Stream.METRIC_ROLLUPS: self.topics.metric_rollups,
            Stream.DEAD_LETTER: self.topics.dead_letter,
            Stream.METRICS: self.topics.metrics,
            Stream.WORKFLOW_EVENTS: self.topics.workflow_events,
            Stream.STATS_CHANGES: self.topics.stats_changes,
            Stream.ALERTS: self.topics.alerts,
        }
        app.agent(self.events_topic, name="lifecycle", concurrency=1)(self._lifecycle_agent)
        app.agent(self.metrics_topic, name="metrics", concurrency=1)(self._metrics_agent)
        app.agent(self.stats_topic, name="stats", concurrency=1)(self._stats_agent)
        app.agent(self.acks_topic, name="acks", concurrency=1)(self._acks_agent)
        if settings.stale_after_ms > 0:
            app.agent(self.ticks_topic, name="liveness", concurrency=1)(self._liveness_agent)
            app.timer(interval=max(0.5, min(10.0, settings.stale_after_ms / 4000)), name="ticks")(self._tick_timer)
        app.timer(interval=settings.rollup_interval_s, name="rollups")(self._rollup_timer)
        app.on_partitions_revoked.connect(cast(Any, self._on_revoked))
        self.assignment = Assignment([*self.watched_topics, self.topics.liveness_ticks], self._beat).attach(app)

    # -- agents ----------------------------------------------------------------------------

    async def _batches(self, stream: Any, topic: str) -> Any:
        """The agent's batches of records: from an inbox filled by Faust's fetch loop, past its
        per-record stream (:mod:`processor.runtime.inbox`), or with ``AXMON_INBOXES=0`` from
        Faust's ``take_events``."""
        if not inboxes_enabled():
            async for events in stream.take_events(self.batch_max, within=self.batch_within_s):
                yield [event.message for event in events]
            return
        aiter(stream.channel)  # Faust subscribes a topic once an agent's channel is iterated
        high_water = int(os.environ.get(INBOX_HIGH_WATER_ENV) or self.app.conf.stream_buffer_maxsize)
        async for messages in Inbox.open(self.app, topic, high_water=high_water).batches(self.batch_max, self.batch_within_s):
            yield messages

    async def _lifecycle_agent(self, stream: Any) -> None:
        async for messages in self._batches(stream, self.topics.workflow_events):
            started = time.perf_counter()
            emits: list[Emit] = []
            for message in messages:
                if self._hang_after is not None:
                    self._hang_after -= 1
                    if self._hang_after < 0:
                        log.warning("fault: the lifecycle agent hangs (%s)", FAULT_HANG_ENV)
                        await asyncio.Event().wait()
                if self._crash == "agent":
                    raise InjectedFault(f"fault: the lifecycle agent crashes ({FAULT_CRASH_ENV})")
                self._begin(self.execution_writes, message)
                emits += self._decode_and(LifecycleEvent, message.key, message.value, _origin(message), self.lifecycle.process)
            emits += self.lifecycle.take_states()  # each changed execution's state record, once a batch
            await self._publish("lifecycle", self.execution_writes, emits, len(messages), started)

    async def _metrics_agent(self, stream: Any) -> None:
        async for messages in self._batches(stream, self.topics.metrics):
            started = time.perf_counter()
            emits: list[Emit] = []
            for message in messages:
                self._begin(self.window_writes, message)
                emits += self._decode_and(MetricRecorded, message.key, message.value, _origin(message), self.metrics.process)
            self.metrics.take_windows()  # each changed window's entry, once a batch
            await self._publish("metrics", self.window_writes, emits, len(messages), started)

    async def _stats_agent(self, stream: Any) -> None:
        async for messages in self._batches(stream, self.topics.stats_changes):
            started = time.perf_counter()
            emits: list[Emit] = []
            for message in messages:
                self._begin(self.stats_writes, message)
                emits += self.stats.process(message.value or b"", _origin(message), message.key)
            await self._publish("stats", self.stats_writes, emits, len(messages), started)

    async def _acks_agent(self, stream: Any) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            message = self._begin(self.window_writes, event.message)
            origin = _origin(message)
            try:
                ack = Ack.from_json(orjson.loads(message.value or b""))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                emits = [dead_letter("invalid_ack", f"not an alert ack: {exc}", origin, message.key, message.value)]
            else:
                emits = self.alerts.guard.run(lambda: self.alerts.ack(ack), origin, message.key, message.value)
            await self._publish("acks", self.window_writes, emits, 1, started)

    async def _liveness_agent(self, stream: Any) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            message = self._begin(self.execution_writes, event.message)
            try:
                now = int(message.value or b"")
            except ValueError:
                continue  # not a tick of ours; ticks are internal
            await self._publish("liveness", self.execution_writes, self.lifecycle.check_stale(message.partition, now), 1, started)

    def _begin(self, writes: WriteBack, message: Any) -> Any:
        """A record is about to be folded into ``writes``: roll its partition's interrupted batch
        forward first (once after a start or a rebalance); its writes are its partition's."""
        if writes.recover((message.partition,)):
            log.warning("rolled forward a batch of partition %d interrupted by a crash", message.partition)
            if writes is self.window_writes:
                self._rolled_windows = True
        writes.begin(message.partition)
        if writes.full:  # between two records: a partition's writes stay far below a record's limit
            writes.flush()
        return message

    async def _publish(self, agent: str, writes: WriteBack, emits: list[Emit], records: int, started: float) -> None:
        """The end of a batch (``records`` records folded since ``started``): its table writes
        (each key once), then its records (coalesced).
        Nothing awaits between the first fold of a batch and here, so no other agent writes in
        between."""
        writes.flush()
        await self._send_changelogs()
        self.consumed[agent] = self.consumed.get(agent, 0) + records
        if self.on_batch is not None:
            self.on_batch(agent, records, time.perf_counter() - started)
        if self._rolled_windows:
            self._rolled_windows = False
            self.metrics.mark_all_dirty()  # a rollup timer may have published windows from before the roll-forward
        self.batches[agent] = self.batches.get(agent, 0) + 1
        await self._send(coalesce(emits))

    async def _tick_timer(self) -> None:
        """A wall-clock tick to every partition: the liveness check runs inside the stream of
        the partition it writes (a table is written only from a stream)."""
        if self.app.rebalancing:
            return
        now = str(int(time.time() * 1000)).encode()
        for partition in range(self.settings.partitions):
            await self.app.producer.send(self.topics.liveness_ticks, None, now, partition, None, None)

    def _decode_and(self, expected: type[Event], key: bytes | None, value: bytes | None, origin: Origin, fold: Any) -> list[Emit]:
        event = decode_input(expected, value, origin, key)
        if isinstance(event, Emit):
            return [event]
        result: list[Emit] = fold(event, origin, value or b"", key)
        return result

    async def _rollup_timer(self) -> None:
        self.started = True  # Faust starts timers once the first recovery is done
        if self._crash == "timer":
            raise InjectedFault(f"fault: the rollup timer crashes ({FAULT_CRASH_ENV})")
        if self.app.rebalancing:
            return
        if not self._recovered:
            self._recovered = True
            self.metrics.mark_all_dirty()
        # Idle windows first: a changed window also due goes once, final (half the rollups of a backlog)
        emits = self.metrics.close_idle(int(time.time() * 1000)) + self.metrics.flush()
        await self._send(emits)

    @property
    def watched_topics(self) -> list[str]:
        """The topics the watchdog judges progress on: every topic the worker consumes but its
        own liveness ticks, which a worker stuck elsewhere may go on committing."""
        t = self.topics
        return [t.workflow_events, t.metrics, t.stats_changes, t.alert_acks]

    def watch(self, stop: threading.Event) -> None:
        """The stall watchdog (see :mod:`processor.runtime.stall`), on a thread of its own with its own
        Kafka clients, so that it runs whatever state Faust is stuck in (a rebalance or a
        recovery that never ends included): restart this process when records wait and no
        committed offset of the group has moved for ``stall_timeout_s`` - ten times that
        while Faust says it is recovering or rebalancing, or has not started yet (joining the
        group and a long changelog recovery are legal)."""
        timeout = self.settings.stall_timeout_s
        interval = max(1.0, min(10.0, timeout / 4))
        group = f"{self.topics.prefix}worker"
        state = StallState()
        while not stop.wait(interval):
            try:
                committed, ends = asyncio.run(group_offsets(self.bootstrap, group, self.watched_topics))
            except AxmonError as exc:
                log.warning("watchdog: %s", exc)
                continue
            now = time.monotonic()
            state = observe(state, Progress(now, committed, ends))
            stuck = stalled_for(state, now)
            busy = not self.started or bool(getattr(self.app, "rebalancing", False) or getattr(self.app, "in_recovery", False))
            self.stall_seen = (stuck, Progress(now, committed, ends).waiting)
            if stuck >= (10 * timeout if busy else timeout):
                waiting = Progress(now, committed, ends).waiting
                log.error("stalled; the consumer's bookkeeping:\n%s\nthe worker's asyncio tasks:\n%s",
                          consumer_bookkeeping(self.app.consumer), task_stacks(self.app.loop))
                restart_process(
                    f"stalled: {waiting} records wait and nothing was committed for {stuck:.0f} s"
                    + (" (Faust still rebalancing or recovering)" if busy else ""), self.reporter
                )

    async def _on_revoked(self, app: Any, revoked: Any, **kwargs: Any) -> None:
        if await self._send_changelogs():  # only a batch cut short: delivered before a recovery reads them
            await self.app.producer.flush()
        for writes in (self.execution_writes, self.stats_writes, self.window_writes):
            writes.forget()
        self.lifecycle.forget()
        self.metrics.forget()
        self._recovered = False

    # -- transport -------------------------------------------------------------------------

    async def _send_changelogs(self) -> int:
        """Send the changelog records of the table writes so far, in order (:class:`TableStore`)."""
        records = [(store.changelog_topic, record) for store in self._stores for record in store.take_changelog()]
        for topic, (partition, key, value) in records:
            await self._produce(topic, key, value, partition)
        return len(records)

    async def _send(self, emits: Iterable[Emit]) -> None:
        for emit in emits:
            if emit.stream is Stream.DEAD_LETTER:
                reason = orjson.loads(emit.value or b"{}").get("reason", "?")
                self.dead_letters[reason] = self.dead_letters.get(reason, 0) + 1
                log.warning("dead letter (%s): %s", reason, emit.key.decode() if emit.key else "")
            topic = self._destinations[emit.stream]
            self.produced[topic] = self.produced.get(topic, 0) + 1
            await self._produce(topic, emit.key, emit.value, emit.partition, list(emit.headers) if emit.headers else None)

    async def _produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None, headers: Any = None) -> None:
        """Send one record; should the producer give up on it, crash before anything commits past it."""
        delivery = cast(asyncio.Future, await self.app.producer.send(topic, key, value, partition, None, headers))
        delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Future) -> None:
        if not delivery.cancelled() and (error := delivery.exception()) is not None:
            restart_process(f"a record could not be delivered ({error!r})", self.reporter)

    def counters(self) -> dict[str, Any]:
        return {
            "lifecycle": dict(self.lifecycle.counters),
            "metrics": dict(self.metrics.counters),
            "stats": dict(self.stats.counters),
            "alerts": dict(self.alerts.counters),
            "dead_letters": dict(self.dead_letters),
            "batches": {**self.batches, "table_writes": sum(w.written for w in (self.execution_writes, self.window_writes, self.stats_writes))},
        }

    def observed(self) -> Observed:
        """What the heartbeat says (read from the status thread)."""
        busy = bool(getattr(self.app, "rebalancing", False) or getattr(self.app, "in_recovery", False))
        stuck, waiting = self.stall_seen or (0.0, None)
        state = stall_state(started=self.started, busy=busy, stalled_for_s=stuck, stall_timeout_s=self.settings.stall_timeout_s)
        return Observed(state, waiting, stuck if self.stall_seen else None, self.counters(), self.assignment.held)

    def _beat(self) -> None:
        if self.reporter is not None:  # the partitions it holds changed: say so now
            self.reporter.beat()


def _origin(message: Any) -> Origin:
    """Where a Faust message came from (its timestamp in epoch ms)."""
    at = None if message.timestamp is None else int(message.timestamp * 1000)
    return origin_of(message.topic, message.partition, message.offset, at, message.headers)


TABLES = ("executions", "tenant-stats", "windows")
ALERT_KEYS = "\x00alert/"
"""The prefix of the alert states' keys in the windows table."""


def changelog_topics(topics: Topics, partitions: int) -> list[TopicSpec]:
    """The worker's changelog topics (Faust names them ``<app id>-<table>-changelog``), created
    up front with the source's partitions: a changelog Faust creates itself at start-up can be
    invisible for a moment, and then its agents stop with PartitionsMismatch."""
    return [TopicSpec(f"{topics.prefix}worker-{table}-changelog", partitions, compacted=True) for table in TABLES]


RESTARTS_ENV = "AXMON_WORKER_RESTARTS"
FAULT_HANG_ENV = "AXMON_FAULT_HANG_AFTER"
"""Tests only: the first run of the worker's lifecycle agent hangs after this many events."""
INBOXES_ENV = "AXMON_INBOXES"
"""``0``: the agents take their records through Faust's stream (``take_events``) instead of
inboxes (on by default; see :meth:`Worker._batches`)."""


def inboxes_enabled() -> bool:
    return os.environ.get(INBOXES_ENV, "1") != "0"


INBOX_HIGH_WATER_ENV = "AXMON_INBOX_HIGH_WATER"
"""Tests only: records waiting in an inbox before its partitions pause (default Faust's
``stream_buffer_maxsize``, 8192), small to pause and resume them often."""
FAULT_CRASH_ENV = "AXMON_FAULT_CRASH"
"""Tests only, in every run: ``agent``: the lifecycle agent raises on every event; ``timer``: the
rollup timer raises."""


class InjectedFault(AxmonError):
    """A failure that a test asked for (:data:`FAULT_CRASH_ENV`)."""


def run_worker(settings: Settings, bootstrap: str, *, rules: RuleSet = RuleSet(), loglevel: str = "warning",
               metrics_at: MetricsAddress | None = None) -> None:
    """Run until SIGTERM/SIGINT (graceful: in-flight events finish, offsets are committed).

    Faust gives up when the broker is away at start-up or a client fails for good. Then this
    process starts itself again (``exec``: same pid, fresh state, backing off up to 30 s): the
    tables recover from their changelogs and the stream resumes at the committed offsets.
    """
    wait_for_broker(bootstrap)
    gc.set_threshold(*FOLDING_THRESHOLDS)  # the collector's full passes would walk every table entry
    first_run = os.environ.get(RESTARTS_ENV, "0") == "0"
    hang_after = os.environ.get(FAULT_HANG_ENV) if first_run else None
    worker = Worker(settings, bootstrap, rules=rules, hang_after=int(hang_after) if hang_after else None,
                    crash=os.environ.get(FAULT_CRASH_ENV) or None)
    reporter = worker.errors.reporter = worker.reporter = StatusReporter(bootstrap, settings.topics.worker_status, f"{settings.topics.prefix}worker",
                                                worker.observed, stall_timeout_s=settings.stall_timeout_s,
                                                state_dir=str(worker.state_dir.absolute()))
    reporter.start()
    if metrics_at is not None:  # from threads of its own, never the event loop
        serve_worker_metrics(worker, metrics_at)
    stop_watching = threading.Event()
    if settings.stall_timeout_s > 0:
        threading.Thread(target=worker.watch, args=(stop_watching,), name="axmon-watchdog", daemon=True).start()
    try:
        runner = faust.Worker(worker.app, loglevel=loglevel, quiet=True)
        # Faust's terminal spinner sets the root logger to DEBUG so that every record spins it:
        # every debug call in aiokafka and Faust then builds a record (about 5% of the CPU).
        runner.spinner = None
        runner.execute_from_commandline()
    except SystemExit as exit_:
        stop_watching.set()
        if exit_.code in (0, None):
            raise
        restart_process("stopped with an error", reporter)
    finally:  # not reached by a restart (exec)
        stop_watching.set()
        reporter.stop()


def restart_process(reason: str, reporter: StatusReporter | None = None) -> None:
    """Start this process again (``exec``: same pid, fresh state), backing off up to 30 s.
    Nothing is flushed or committed: it is a crash, which the folds are built to survive."""
    restarts = int(os.environ.get(RESTARTS_ENV, "0")) + 1
    delay = min(30.0, 2.0 ** min(restarts, 5))
    log.error("the worker %s; starting again in %.0f s (restart %d)", reason, delay, restarts)
    sys.stderr.write(f"axmon worker: {reason}, starting again in {delay:.0f} s\n")
    sys.stderr.flush()
    if reporter is not None:  # the 'restarting' record, then heartbeats through the backoff
        reporter.restarting(reason)
    time.sleep(delay)
    os.environ[RESTARTS_ENV] = str(restarts)
    os.execv(sys.executable, [sys.executable, "-m", "processor.cli", *sys.argv[1:]])
