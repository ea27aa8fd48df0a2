"""The collectors of each axmon process: they read the counters the worker, the sink, the
notifier and the sink's database already keep, at scrape time, into the metrics defined in
:mod:`processor.runtime.metrics_export`; and the functions that start each process's endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from processor.runtime.metrics_export import (
    DB_LAST_WRITE,
    DB_ROWS,
    DB_SINCE_WRITE,
    EXECUTION_COST,
    EXECUTION_TOKENS,
    EXECUTIONS,
    LAST_ERROR,
    NOTIFY_INVALID,
    NOTIFY_RECORDS,
    RECORDS_BUCKETS,
    RESTARTS,
    SECONDS_BUCKETS,
    SINK_BATCH_RECORDS,
    SINK_CONSUMED,
    SINK_LAST_WRITE,
    SINK_ROWS,
    SINK_SINCE_WRITE,
    SINK_SKIPPED,
    SINK_TRANSACTION_SECONDS,
    SINK_TRANSACTIONS,
    WEBHOOK_DELIVERIES,
    WORKER_BATCH_RECORDS,
    WORKER_BATCHES,
    WORKER_CONSUMED,
    WORKER_DEAD_LETTERS,
    WORKER_FOLD_EVENTS,
    WORKER_FOLD_SECONDS,
    WORKER_LAST_ERROR,
    WORKER_PARTITIONS,
    WORKER_PROCESSING_ERRORS,
    WORKER_PRODUCED,
    WORKER_RESTARTS,
    WORKER_STALLED,
    WORKER_STATE,
    WORKER_TABLE_ENTRIES,
    WORKER_TABLE_WRITES,
    WORKER_WAITING,
    Exporter,
    LagMonitor,
    MetricsAddress,
    axmon_groups,
    family_of,
    single,
)
from schemas.topics import Topics

# -- restarts of a long-lived consumer ----------------------------------------------------------


def restart_families(component: str, count: int, last_error_at_s: float | None) -> list[Metric]:
    return [family_of(RESTARTS, {component: count}), family_of(LAST_ERROR, {component: last_error_at_s or 0.0})]


def webhook_label(url: str) -> str:
    """A webhook URL as a label: scheme, host and path, without user info or query (which may
    hold secrets)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "?"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# -- the processes ------------------------------------------------------------------------------


class WorkerCollector(Collector):
    """The worker's counters (read at scrape time from ``Worker.counters()`` and its heartbeat's
    status), and the two per-batch histograms (:meth:`observe_batch`, called by the agents)."""

    def __init__(self, worker: Any, registry: CollectorRegistry) -> None:
        self.worker = worker
        self._fold_seconds = WORKER_FOLD_SECONDS.histogram(registry, SECONDS_BUCKETS)
        self._batch_records = WORKER_BATCH_RECORDS.histogram(registry, RECORDS_BUCKETS)
        self._children: dict[str, tuple[Any, Any]] = {}

    def observe_batch(self, agent: str, records: int, seconds: float) -> None:
        children = self._children.get(agent)
        if children is None:
            children = self._children[agent] = (self._fold_seconds.labels(agent), self._batch_records.labels(agent))
        children[0].observe(seconds)
        children[1].observe(records)

    def collect(self) -> Iterator[Metric]:
        from processor.runtime.worker_status import STATES

        w = self.worker
        status = w.reporter.status() if w.reporter is not None else None
        counters = status.counters if status is not None else w.counters()
        t = w.topics
        sources = {"lifecycle": t.workflow_events, "metrics": t.metrics, "stats": t.stats_changes, "acks": t.alert_acks,
                   "liveness": t.liveness_ticks}
        yield family_of(WORKER_CONSUMED, {sources.get(agent, agent): n for agent, n in dict(w.consumed).items()})
        yield family_of(WORKER_PRODUCED, dict(w.produced))
        yield family_of(WORKER_DEAD_LETTERS, dict(counters.get("dead_letters", {})))
        if status is not None:
            yield single(WORKER_PROCESSING_ERRORS, status.processing_errors)
        cores = {(core, name): value for core in ("lifecycle", "metrics", "stats", "alerts")
                 for name, value in counters.get(core, {}).items()}
        yield family_of(WORKER_FOLD_EVENTS, cores)
        batches = dict(counters.get("batches", {}))
        writes = batches.pop("table_writes", 0)
        yield family_of(WORKER_BATCHES, batches)
        yield single(WORKER_TABLE_WRITES, writes)
        tables = {"executions": w.executions, "tenant-stats": w.tenant_stats, "windows": w.windows}
        yield family_of(WORKER_TABLE_ENTRIES, {name: len(table) for name, table in tables.items()})
        if status is not None:
            history = status.history
            yield single(WORKER_RESTARTS, history.restarts)
            yield single(WORKER_LAST_ERROR, 0.0 if history.last_error is None else history.last_error.at_ms / 1000)
            yield family_of(WORKER_STATE, {s: float(s == status.state) for s in STATES})
            held = status.partitions or {}
            yield family_of(WORKER_PARTITIONS, {(topic, str(p)): 1.0 for topic, ps in held.items() for p in ps})
            if status.waiting is not None:
                yield single(WORKER_WAITING, status.waiting)
            if status.stalled_for_s is not None:
                yield single(WORKER_STALLED, status.stalled_for_s)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class SinkCollector(Collector):
    """``SinkCounters`` at scrape time, and the transaction histograms (:meth:`observe_transaction`)."""

    def __init__(self, counters: Any, registry: CollectorRegistry, restarts: Any) -> None:
        self.counters = counters
        self.restarts = restarts
        self.started_at = time.time()
        self._seconds = SINK_TRANSACTION_SECONDS.histogram(registry, SECONDS_BUCKETS)
        self._records = SINK_BATCH_RECORDS.histogram(registry, RECORDS_BUCKETS)

    def observe_transaction(self, records: int, seconds: float) -> None:
        self._seconds.observe(seconds)
        self._records.observe(records)

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        yield family_of(SINK_CONSUMED, dict(c.by_topic))
        yield single(SINK_TRANSACTIONS, c.batches)
        yield family_of(SINK_ROWS, dict(c.rows))
        yield family_of(SINK_SKIPPED, {"late": c.late_samples, "misrouted": c.misrouted, "invalid": c.invalid,
                                       "unwritable": c.unwritable})
        yield single(SINK_LAST_WRITE, c.last_write_at_s or 0.0)
        yield single(SINK_SINCE_WRITE, max(0.0, time.time() - (c.last_write_at_s or self.started_at)))
        yield from restart_families("sink", self.restarts.count, self.restarts.last_error_at_s)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class NotifyCollector(Collector):
    """``NotifyCounters`` at scrape time."""

    def __init__(self, counters: Any, restarts: Any) -> None:
        self.counters = counters
        self.restarts = restarts

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        yield single(NOTIFY_RECORDS, c.records)
        yield single(NOTIFY_INVALID, c.invalid)
        outcomes: dict[tuple[str, str], int] = {}
        for url, u in list(c.urls.items()):
            label = webhook_label(url)
            for outcome, n in (("delivered", u.delivered), ("retried", u.retried), ("failed", u.failed)):
                outcomes[(label, outcome)] = outcomes.get((label, outcome), 0) + n
        yield family_of(WEBHOOK_DELIVERIES, outcomes)
        yield from restart_families("notify", self.restarts.count, self.restarts.last_error_at_s)

    def describe(self) -> Iterator[Metric]:
        return iter(())


def serve_worker_metrics(worker: Any, at: MetricsAddress) -> Exporter:
    """The worker's metrics and its own group's consumer lag on ``at``."""
    exporter = Exporter()
    collector = WorkerCollector(worker, exporter.registry)
    worker.on_batch = collector.observe_batch
    group = f"{worker.topics.prefix}worker"
    exporter.add(collector).add(LagMonitor(worker.bootstrap, {group: axmon_groups(worker.topics)[group]}).start())
    return exporter.serve(at)


def serve_sink_metrics(runner: Any, restarts: Any, at: MetricsAddress) -> Exporter:
    """The sink's metrics and the consumer lag of every axmon group on ``at`` (the sink runs
    beside the worker, so its scrapes show the worker's lag while the worker is down)."""
    exporter = Exporter()
    collector = SinkCollector(runner.counters, exporter.registry, restarts)
    runner.on_transaction = collector.observe_transaction
    exporter.add(collector).add(LagMonitor(runner.bootstrap, axmon_groups(runner.topics)).start())
    return exporter.serve(at)


def serve_notify_metrics(runner: Any, restarts: Any, at: MetricsAddress) -> Exporter:
    """The notifier's metrics and its own group's consumer lag on ``at``."""
    exporter = Exporter()
    lag = LagMonitor(runner.bootstrap, {runner.group: [runner.topic]}).start()
    return exporter.add(NotifyCollector(runner.counters, restarts)).add(lag).serve(at)


class DatabaseCollector(Collector):
    """The sink's database as ``axmon serve`` sees it, read at most every ``ttl_s`` (a scrape
    counts every table)."""

    def __init__(self, db_path: Any, ttl_s: float = 15.0) -> None:
        self.db_path = db_path
        self.ttl_s = ttl_s
        self._cached: tuple[float, Any] | None = None
        self._lock = threading.Lock()

    def stats(self) -> Any:
        from processor.store.db_stats import read_db_stats

        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.ttl_s:
                self._cached = (now, read_db_stats(self.db_path))
            return self._cached[1]

    def collect(self) -> Iterator[Metric]:
        stats = self.stats()
        yield family_of(DB_ROWS, stats.rows)
        written = 0.0 if stats.last_write_at_ms is None else stats.last_write_at_ms / 1000
        yield single(DB_LAST_WRITE, written)
        if written:
            yield single(DB_SINCE_WRITE, max(0.0, time.time() - written))
        tokens: dict[str, float] = {}
        cost: dict[str, float] = {}
        for e in stats.executions:
            tokens[e.tenant] = tokens.get(e.tenant, 0) + e.tokens
            cost[e.tenant] = cost.get(e.tenant, 0.0) + e.cost
        yield family_of(EXECUTIONS, {(e.tenant, e.status): e.executions for e in stats.executions})
        yield family_of(EXECUTION_TOKENS, tokens)
        yield family_of(EXECUTION_COST, cost)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class ServeMetrics:
    """``/metrics`` of ``axmon serve``: the database, and with a broker the consumer lag of every
    axmon group (its thread starts at the first scrape)."""

    def __init__(self, db_path: Any, topics: Topics, bootstrap: str | None) -> None:
        self.exporter = Exporter().add(DatabaseCollector(db_path))
        self.lag = None if bootstrap is None else LagMonitor(bootstrap, axmon_groups(topics))
        if self.lag is not None:
            self.exporter.add(self.lag)

    def scrape(self) -> bytes:
        from prometheus_client import generate_latest

        if self.lag is not None:
            self.lag.start()
        return generate_latest(self.exporter.registry)
