"""The Prometheus metrics of every axmon process: their names, help and labels, in one place; the
registry and HTTP endpoint of a process; and the consumer lag (:class:`LagMonitor`). The
collectors of each process are in :mod:`processor.runtime.metrics_collectors`.

Each process exports on a :class:`~prometheus_client.CollectorRegistry` of its own (never the
global default registry). Counters and gauges are read at scrape time by custom collectors
from what the process already counts (the worker's cores and its heartbeat, ``SinkCounters``,
``NotifyCounters``), so the hot path pays nothing for them; the two histograms of the worker and
of the sink are observed once per batch. Consumer lag comes from a thread of its own
(:class:`LagMonitor`), which reads the groups' committed offsets and the end offsets every few
seconds with :func:`~processor.runtime.admin.group_offsets`, never per record.

The endpoint is served from a thread (``prometheus_client.start_http_server``), so the Faust event
loop and the consumers' loops are not involved in a scrape.

Conventions: base units (seconds), counters end in ``_total``, and every label value comes from
a bounded set: topic and table names, core counter names, dead-letter reasons, agent names,
consumer groups, partitions, webhook URLs as configured (without user info or query), tenants
and execution statuses. No execution, event or alert id is ever a label.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from processor.errors import ConfigError
from schemas.topics import Topics

log = logging.getLogger(__name__)


# -- the definitions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Def:
    """One metric: its full name (counters with ``_total``), help text, type and label names."""

    name: str
    help: str
    kind: str
    """``counter``, ``gauge`` or ``histogram``."""
    labels: tuple[str, ...] = ()

    def family(self) -> CounterMetricFamily | GaugeMetricFamily:
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.labels)
        if self.kind == "gauge":
            return GaugeMetricFamily(self.name, self.help, labels=self.labels)
        raise ValueError(f"{self.name} is a {self.kind}: a live metric, not a family")

    def histogram(self, registry: CollectorRegistry, buckets: Sequence[float]) -> Histogram:
        return Histogram(self.name, self.help, self.labels, registry=registry, buckets=buckets)


def _c(name: str, help: str, *labels: str) -> Def:
    return Def(f"axmon_{name}", help, "counter", labels)


def _g(name: str, help: str, *labels: str) -> Def:
    return Def(f"axmon_{name}", help, "gauge", labels)


def _h(name: str, help: str, *labels: str) -> Def:
    return Def(f"axmon_{name}", help, "histogram", labels)


# the worker
WORKER_CONSUMED = _c("worker_records_consumed_total", "Records the worker's agents took from a topic.", "topic")
WORKER_PRODUCED = _c("worker_records_produced_total", "Records the worker sent to a topic (dead letters included).", "topic")
WORKER_DEAD_LETTERS = _c("worker_dead_letters_total", "Records the worker sent to the dead-letter topic, by reason.", "reason")
WORKER_PROCESSING_ERRORS = _c("worker_processing_errors_total", "Records whose processing raised (dead-lettered as processing_error).")
WORKER_FOLD_EVENTS = _c("worker_fold_events_total", "What the processing cores counted, by core and counter name.", "core", "counter")
WORKER_BATCHES = _c("worker_batches_total", "Batches folded, by agent.", "agent")
WORKER_TABLE_WRITES = _c("worker_table_writes_total", "Table entries written (changelog records).")
WORKER_TABLE_ENTRIES = _g("worker_table_entries", "Entries in a worker table (this process's partitions).", "table")
WORKER_RESTARTS = _c("worker_restarts_total", "Times the worker process started itself again since it was first started.")
WORKER_LAST_ERROR = _g("worker_last_error_timestamp_seconds", "When the worker last recorded an error (epoch seconds; 0: never).")
WORKER_STATE = _g("worker_state", "1 for the worker's current state (starting, recovering, running, stalled, restarting, stopped).", "state")
WORKER_PARTITIONS = _g("worker_assigned_partition", "1 for each source partition this worker process holds (none during a rebalance).",
                       "topic", "partition")
WORKER_WAITING = _g("worker_waiting_records", "Records waiting for the worker's group, as the stall watchdog last saw them.")
WORKER_STALLED = _g("worker_stalled_seconds", "Seconds records have waited with no committed offset of the group moving.")
WORKER_FOLD_SECONDS = _h("worker_fold_duration_seconds", "Time to fold one batch and write its table entries, by agent.", "agent")
WORKER_BATCH_RECORDS = _h("worker_batch_records", "Records per folded batch, by agent.", "agent")

# the sink
SINK_CONSUMED = _c("sink_records_consumed_total", "Records the sink took from a topic.", "topic")
SINK_TRANSACTIONS = _c("sink_transactions_total", "SQLite transactions the sink committed (one per batch).")
SINK_ROWS = _c("sink_rows_written_total", "Rows the sink upserted or inserted, by table.", "table")
SINK_SKIPPED = _c("sink_records_skipped_total", "Records the sink did not store, by reason (late, misrouted, invalid, unwritable).", "reason")
SINK_LAST_WRITE = _g("sink_last_write_timestamp_seconds", "When the sink last committed a transaction (epoch seconds; 0: not yet).")
SINK_SINCE_WRITE = _g("sink_seconds_since_last_write", "Seconds since the sink last committed a transaction (since its start when none yet).")
SINK_TRANSACTION_SECONDS = _h("sink_transaction_duration_seconds", "Time of one SQLite transaction of the sink.")
SINK_BATCH_RECORDS = _h("sink_batch_records", "Records per sink transaction.")

# the notifier
NOTIFY_RECORDS = _c("notify_records_total", "Alert transitions whose delivery to every webhook finished.")
NOTIFY_INVALID = _c("notify_invalid_records_total", "Records on the alerts topic that are not alert transitions.")
WEBHOOK_DELIVERIES = _c("webhook_deliveries_total", "Webhook outcomes: delivered, retried (an attempt made again), failed (given up).",
                        "webhook", "outcome")

# any long-lived consumer (the sink, the notifier)
RESTARTS = _c("restarts_total", "Times the process's consumer started again after a Kafka error.", "component")
LAST_ERROR = _g("last_error_timestamp_seconds", "When the process's consumer last failed (epoch seconds; 0: never).", "component")

# consumer lag (the LagMonitor)
LAG = _g("consumer_lag_records", "Records on a partition past the group's committed offset.", "group", "topic", "partition")
COMMITTED = _g("consumer_committed_offset", "The offset a group has committed on a partition (0: none).", "group", "topic", "partition")
END_OFFSET = _g("topic_end_offset", "The offset the next record of a partition will get.", "topic", "partition")
LAG_POLLED = _g("lag_poll_timestamp_seconds", "When the consumer lag was last read from Kafka (epoch seconds; 0: not yet).")
LAG_ERRORS = _c("lag_poll_errors_total", "Reads of the consumer lag that failed.")

# the database (axmon serve)
DB_ROWS = _g("db_table_rows", "Rows in a table of the sink's database.", "table")
DB_LAST_WRITE = _g("db_last_write_timestamp_seconds", "When the sink last wrote the database (epoch seconds; 0: never).")
DB_SINCE_WRITE = _g("db_seconds_since_last_write", "Seconds since the sink last wrote the database.")
EXECUTIONS = _g("executions", "Executions in the database by tenant and status.", "tenant", "status")
EXECUTION_TOKENS = _g("execution_tokens", "Tokens used by the executions in the database, by tenant.", "tenant")
EXECUTION_COST = _g("execution_cost", "Cost of the executions in the database, by tenant (the engine's currency).", "tenant")

DEFINITIONS: tuple[Def, ...] = tuple(v for k, v in dict(globals()).items() if isinstance(v, Def))
"""Every metric axmon exports (the README's table lists them)."""

SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
RECORDS_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


# -- where to serve ---------------------------------------------------------------------------


class MetricsAddress(NamedTuple):
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> MetricsAddress:
        """``PORT`` (on 127.0.0.1) or ``HOST:PORT``; raises :class:`ConfigError`. An argparse
        ``type``."""
        host, sep, port = text.rpartition(":")
        try:
            number = int(port)
        except ValueError:
            raise ConfigError(f"a metrics port must be PORT or HOST:PORT, not {text!r}") from None
        if not 0 <= number <= 65535:
            raise ConfigError(f"{number} is not a port")
        return cls((host.strip("[]") if sep else "") or "127.0.0.1", number)


class Exporter:
    """A registry of its own, served over HTTP from a thread."""

    def __init__(self) -> None:
        disable_created_metrics()  # no ``_created`` series beside the histograms (a process-wide switch)
        self.registry = CollectorRegistry(auto_describe=True)
        self._server: Any = None

    def add(self, collector: Collector) -> Exporter:
        self.registry.register(collector)
        return self

    def serve(self, at: MetricsAddress) -> Exporter:
        try:
            self._server, _thread = start_http_server(at.port, at.host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {at.host}:{at.port}: {exc}") from exc
        return self

    @property
    def port(self) -> int:
        return int(self._server.server_port) if self._server is not None else 0

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def family_of(d: Def, values: Mapping[Any, float]) -> CounterMetricFamily | GaugeMetricFamily:
    """A family of ``d`` with one sample per key of ``values`` (a label value, or a tuple of them)."""
    family = d.family()
    for key, value in sorted(values.items(), key=lambda kv: str(kv[0])):
        labels = list(key) if isinstance(key, tuple) else [key]
        family.add_metric([str(v) for v in labels], float(value))
    return family


def single(d: Def, value: float) -> CounterMetricFamily | GaugeMetricFamily:
    family = d.family()
    family.add_metric([], float(value))
    return family


# -- consumer lag -----------------------------------------------------------------------------


def axmon_groups(topics: Topics) -> dict[str, list[str]]:
    """Every consumer group of axmon with the topics it consumes (the worker's liveness ticks
    left out: internal)."""
    t = topics
    return {
        f"{t.prefix}worker": [t.workflow_events, t.metrics, t.stats_changes, t.alert_acks],
        f"{t.prefix}sink": [t.execution_state, t.metric_rollups, t.dead_letter, t.metrics, t.alerts],
        f"{t.prefix}notify": [t.alerts],
    }


Offsets = dict[tuple[str, int], int]


@dataclass
class LagSnapshot:
    groups: dict[str, tuple[Offsets, Offsets]] = field(default_factory=dict)
    """group -> (committed, ends) per (topic, partition)."""
    polled_at_s: float = 0.0
    errors: int = 0


class LagMonitor(Collector):
    """Reads the committed and end offsets of ``groups`` every ``interval_s`` on a thread of its
    own (one poll at once on :meth:`start`) and exports the last reading."""

    def __init__(self, bootstrap: str, groups: Mapping[str, list[str]], interval_s: float = 5.0) -> None:
        self.bootstrap = bootstrap
        self.groups = dict(groups)
        self.interval_s = interval_s
        self.snapshot = LagSnapshot()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LagMonitor:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="axmon-lag", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            self.poll()
            if self._stop.wait(self.interval_s):
                return

    def poll(self) -> None:
        from processor.runtime.admin import group_offsets

        async def read() -> list[tuple[Offsets, Offsets]]:
            return list(await asyncio.gather(*(group_offsets(self.bootstrap, g, ts) for g, ts in self.groups.items())))

        try:
            results = asyncio.run(read())
        except Exception as exc:  # noqa: BLE001 - the broker away or anything else: the next poll tries again
            self.snapshot = LagSnapshot(self.snapshot.groups, self.snapshot.polled_at_s, self.snapshot.errors + 1)
            log.warning("consumer lag not read: %s", exc)
            return
        self.snapshot = LagSnapshot(dict(zip(self.groups, results)), time.time(), self.snapshot.errors)

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        lag, committed = LAG.family(), COMMITTED.family()
        ends: dict[tuple[str, int], int] = {}
        for group, (done, end) in sorted(snap.groups.items()):
            for (topic, partition), offset in sorted(end.items()):
                labels = [group, topic, str(partition)]
                lag.add_metric(labels, float(max(0, offset - done.get((topic, partition), 0))))
                committed.add_metric(labels, float(done.get((topic, partition), 0)))
                ends[(topic, partition)] = offset
        yield lag
        yield committed
        yield family_of(END_OFFSET, ends)
        yield single(LAG_POLLED, snap.polled_at_s)
        yield single(LAG_ERRORS, snap.errors)

    def describe(self) -> Iterator[Metric]:
        return iter(())
