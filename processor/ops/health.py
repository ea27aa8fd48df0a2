"""Is the pipeline healthy? Pure rules: observations in, statuses out, no I/O.

:mod:`processor.ops.health_probe` gathers an :class:`Observations` (the broker's metadata, end and
committed offsets, the database's own record of the sink's offsets and last write);
:func:`evaluate` turns it into a :class:`Report` of components, each healthy, degraded or
unhealthy with its reasons (``unknown`` when it could not be checked because something it
depends on failed). The overall status is the worst component's, ``unknown`` counting as
unhealthy; :func:`exit_code` maps it to 0 / 1 / 2 so that ``axmon health`` serves as a probe.

Lag, per consumer group and partition, is ``end offset - committed offset`` (the whole
partition when nothing is committed). The worker's progress is what its Kafka group has
committed. The sink's truth is the ``sink_offsets`` table it writes in the same transaction as
its rows (it seeks there on start; its Kafka commits are informational only), so the sink's lag
is read from the database when there is one, and from the ``<prefix>sink`` group's commits
otherwise (a database on another machine); the report says which.

The worker is judged by what it says of itself too: the latest heartbeat of every worker
process (:mod:`processor.runtime.worker_status`) with its state, restarts, last error and counters.
A worker that restarts, fails or stalls, or that does not beat while records wait, is not
healthy, whatever its lag says (a crash-looping worker commits nothing and shows no lag while
producers are quiet).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from processor.ops.observations import (
    DatabaseObservation,
    Group,
    KafkaObservation,
    Observations,
)
from processor.runtime.worker_status import WorkerStatus, format_partitions, unheld_partitions


class Status(Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNKNOWN = "unknown"
    UNHEALTHY = "unhealthy"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Status.HEALTHY: 0, Status.DEGRADED: 1, Status.UNKNOWN: 2, Status.UNHEALTHY: 3}


def worst(statuses: Sequence[Status]) -> Status:
    """The overall status: the worst of ``statuses``, ``unknown`` counting as unhealthy."""
    top = max(statuses, key=lambda s: s.rank, default=Status.HEALTHY)
    return Status.UNHEALTHY if top is Status.UNKNOWN else top


def exit_code(status: Status) -> int:
    """0 healthy, 1 degraded, 2 unhealthy (or unknown)."""
    return {Status.HEALTHY: 0, Status.DEGRADED: 1}.get(status, 2)


# -- observations -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thresholds:
    lag_degraded: int = 1_000
    """A group whose total lag is above this is degraded."""
    lag_unhealthy: int = 100_000
    """... and above this, unhealthy."""
    sink_stale_s: float = 300.0
    """The sink is degraded when records wait for it and it has not written for this long."""
    heartbeat_stale_s: float = 30.0
    """A worker whose last heartbeat is older than this is not running."""
    restart_window_s: float = 600.0
    """Restarts and errors this recent count against a worker."""


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    status: Status
    reasons: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status.value, "reasons": list(self.reasons), "details": dict(self.details)}


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True, slots=True)
class GroupLag:
    group: Group
    source: str
    """``kafka`` (the group's committed offsets) or ``database`` (the sink's ``sink_offsets``)."""
    partitions: tuple[PartitionLag, ...]

    @property
    def total(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True, slots=True)
class Report:
    overall: Status
    components: tuple[Component, ...]
    lag: Mapping[str, GroupLag | None]
    """Per group role; ``None`` when it could not be measured."""
    checked_at_ms: int
    bootstrap: str | None
    topic_prefix: str
    database: str

    @property
    def exit_code(self) -> int:
        return exit_code(self.overall)

    def component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def to_json(self) -> dict[str, Any]:
        """The stable document of ``axmon health --json``."""
        return {
            "overall": self.overall.value,
            "checked_at": self.checked_at_ms,
            "bootstrap": self.bootstrap,
            "topic_prefix": self.topic_prefix,
            "db_path": self.database,
            "components": [c.to_json() for c in self.components],
            "lag": {
                role: None if g is None else {f"{p.topic}/{p.partition}": p.lag for p in g.partitions}
                for role, g in self.lag.items()
            },
        }


# -- the rules ------------------------------------------------------------------------------------


def evaluate(obs: Observations, thresholds: Thresholds = Thresholds()) -> Report:
    lag = {g.role: group_lag(obs, g) for g in obs.groups}
    components = (
        broker_component(obs.kafka),
        topics_component(obs),
        lag_component(obs, lag, thresholds),
        worker_component(obs, lag.get("worker"), thresholds),
        sink_component(obs, lag.get("sink"), thresholds),
        database_component(obs.database, obs.expected_schema_version),
    )
    return Report(
        overall=worst([c.status for c in components]),
        components=components,
        lag=lag,
        checked_at_ms=obs.now_ms,
        bootstrap=obs.kafka.bootstrap,
        topic_prefix=obs.topic_prefix,
        database=obs.database.path,
    )


def broker_component(kafka: KafkaObservation) -> Component:
    if kafka.error is not None:
        return Component("broker", Status.UNHEALTHY, (f"unreachable: {kafka.error}",), {"bootstrap": kafka.bootstrap})
    ms = kafka.metadata_ms
    return Component(
        "broker", Status.HEALTHY,
        (f"metadata answered in {ms:.0f} ms" if ms is not None else "metadata answered",),
        {"bootstrap": kafka.bootstrap, "metadata_ms": None if ms is None else round(ms, 1)},
    )


def _not_checked(name: str) -> Component:
    return Component(name, Status.UNKNOWN, ("not checked: the broker is unreachable",))


def topics_component(obs: Observations) -> Component:
    kafka = obs.kafka
    if not kafka.reachable:
        return _not_checked("topics")
    missing = [t for t in obs.expected_topics if t not in kafka.partitions]
    counts = {t: kafka.partitions[t] for t in obs.expected_topics if t in kafka.partitions}
    details: dict[str, Any] = {"partitions": counts, "missing": missing}
    reasons: list[str] = []
    status = Status.HEALTHY
    if len(missing) == len(obs.expected_topics):
        status = Status.UNHEALTHY
        reasons.append(f"no axmon topics with the prefix {obs.topic_prefix!r}: start 'axmon worker' (it creates them)")
    elif missing:
        sources = [t for t in missing if t in obs.source_topics]
        status = Status.UNHEALTHY if sources else Status.DEGRADED
        reasons.append(f"missing: {', '.join(missing)}")
    if len(set(counts.values())) > 1:
        status = Status.UNHEALTHY
        shown = ", ".join(f"{t} {n}" for t, n in counts.items())
        reasons.append(f"partition counts differ, co-partitioning is broken: {shown}")
    if not reasons:
        n = next(iter(counts.values()), 0)
        reasons.append(f"all {len(counts)} present, {n} partitions each")
    return Component("topics", status, tuple(reasons), details)


def group_lag(obs: Observations, group: Group) -> GroupLag | None:
    """The group's lag per partition of its topics that exist, or ``None`` when the offsets
    are not known. The sink's committed offsets come from the database when it has its
    ``sink_offsets`` table, from Kafka otherwise."""
    kafka = obs.kafka
    if not kafka.reachable or kafka.offsets_error is not None:
        return None
    stored = obs.database.sink_offsets
    if group.role == "sink" and stored is not None:
        source, committed = "database", stored
    else:
        source, committed = "kafka", kafka.committed.get(group.group_id, {})
    partitions = tuple(
        PartitionLag(topic, partition, committed.get((topic, partition), 0), end)
        for (topic, partition), end in sorted(kafka.ends.items())
        if topic in group.topics
    )
    return GroupLag(group, source, partitions)


_SOURCE_TEXT = {
    "kafka": "offsets committed to Kafka",
    "database": "sink_offsets in the database",
}


def lag_component(obs: Observations, lag: Mapping[str, GroupLag | None], thresholds: Thresholds) -> Component:
    kafka = obs.kafka
    if not kafka.reachable:
        return _not_checked("lag")
    if kafka.offsets_error is not None:
        return Component("lag", Status.UNKNOWN, (f"offsets not read: {kafka.offsets_error}",))
    status = Status.HEALTHY
    reasons: list[str] = []
    details: dict[str, Any] = {}
    for role, measured in lag.items():
        if measured is None:
            continue
        total = measured.total
        details[role] = {"group": measured.group.group_id, "source": measured.source, "total": total,
                         "partitions": len(measured.partitions)}
        where = f"({measured.group.group_id}, {_SOURCE_TEXT[measured.source]})"
        if not measured.partitions:
            reasons.append(f"{role}: none of its topics exist ({measured.group.group_id})")
        elif total > thresholds.lag_unhealthy:
            status = worst([status, Status.UNHEALTHY])
            reasons.append(f"{role}: {total:,} records behind, above {thresholds.lag_unhealthy:,} {where}")
        elif total > thresholds.lag_degraded:
            status = worst([status, Status.DEGRADED])
            reasons.append(f"{role}: {total:,} records behind, above {thresholds.lag_degraded:,} {where}")
        else:
            reasons.append(f"{role}: {total:,} records behind {where}")
    return Component("lag", status, tuple(reasons), details)


def sink_component(obs: Observations, lag: GroupLag | None, thresholds: Thresholds) -> Component:
    """Stale only matters while records wait: an idle pipeline with nothing to write is
    healthy however long ago the last write was."""
    db = obs.database
    last = db.last_write_ms
    age_s = None if last is None else max(0.0, (obs.now_ms - last) / 1000)
    details: dict[str, Any] = {
        "last_write_at": last, "seconds_since_last_write": None if age_s is None else round(age_s, 1),
        "last_write_source": db.last_write_source, "waiting": None if lag is None else lag.total,
    }
    if age_s is not None:
        since = f"last write {format_age(age_s)} ago"
    elif db.exists and db.error is None:
        since = "never written"
    else:
        since = "no record of a write (no readable database)"
    if db.last_write_source == "file mtime":
        since += " (file modification time)"
    if lag is None:
        why = "the broker is unreachable" if not obs.kafka.reachable else "its lag is unknown"
        return Component("sink", Status.UNKNOWN, (f"{since}; not judged: {why}",), details)
    waiting = lag.total
    if waiting == 0:
        return Component("sink", Status.HEALTHY, (f"caught up; {since}",), details)
    if age_s is None or age_s > thresholds.sink_stale_s:
        quiet = "never written" if age_s is None else (
            f"not written for {format_age(age_s)} (over {format_age(thresholds.sink_stale_s)})")
        return Component(
            "sink", Status.DEGRADED, (f"{waiting:,} records wait and the sink has {quiet}: is 'axmon sink' running?",), details,
        )
    return Component("sink", Status.HEALTHY, (f"writing: {waiting:,} records to go; {since}",), details)


def worker_component(obs: Observations, lag: GroupLag | None, thresholds: Thresholds) -> Component:
    """The worker as it says it is (its heartbeats), judged with what waits for it: a worker
    that restarts, fails, stalls or does not beat while records wait is not healthy."""
    if not obs.kafka.reachable:
        return _not_checked("worker")
    seen = obs.workers
    if seen.error is not None:
        return Component("worker", Status.UNKNOWN, (f"its status was not read: {seen.error}",))
    waiting = None if lag is None else lag.total
    now = obs.now_ms

    def age(at_ms: int) -> float:
        return max(0.0, (now - at_ms) / 1000)

    live = [w for w in seen.statuses if w.state != "stopped" and age(w.heartbeat_at_ms) <= thresholds.heartbeat_stale_s]
    details: dict[str, Any] = {
        "waiting": waiting, "heartbeat_stale_s": thresholds.heartbeat_stale_s,
        "workers": [_worker_details(w, age(w.heartbeat_at_ms), w in live) for w in seen.statuses],
    }
    if not live:
        last = max(seen.statuses, key=lambda w: w.heartbeat_at_ms, default=None)
        if last is None:
            what = "no worker has published a heartbeat" + (
                f" ({obs.topic_prefix}worker-status does not exist)" if seen.topic_missing else "")
        elif last.state == "stopped":
            what = f"the last worker ({last.worker}) stopped {format_age(age(last.heartbeat_at_ms))} ago"
        else:
            what = (f"no heartbeat for {format_age(age(last.heartbeat_at_ms))} from the last worker "
                    f"({last.worker}, {last.state}, over {format_age(thresholds.heartbeat_stale_s)})")
        if last is not None and last.history.last_error is not None:
            what += f"; its last error: {_error_text(last)}"
        if waiting is None:
            return Component("worker", Status.UNKNOWN, (f"not judged (its lag is unknown): {what}",), details)
        if waiting:
            return Component("worker", Status.UNHEALTHY,
                             (f"not running: {waiting:,} records wait and {what}: is 'axmon worker' running?",), details)
        return Component("worker", Status.HEALTHY, (f"none running, nothing waits: {what}",), details)
    status = Status.HEALTHY
    reasons: list[str] = []
    for worker in sorted(live, key=lambda w: w.worker):
        judged, said = _judge_worker(worker, now, thresholds)
        status = worst([status, judged])
        reasons.extend(said)
    gone = [w for w in seen.statuses if w not in live and w.state != "stopped"
            and age(w.heartbeat_at_ms) <= thresholds.restart_window_s]
    reasons.extend(f"{w.worker}: gone, no heartbeat for {format_age(age(w.heartbeat_at_ms))}" for w in gone)
    status = worst([status, _coverage(obs, live, reasons, details)])
    return Component("worker", status, tuple(reasons), details)


def _coverage(obs: Observations, live: list[WorkerStatus], reasons: list[str], details: dict[str, Any]) -> Status:
    """Every partition of the worker group's topics held by a live worker (judged when the live
    workers say what they hold): degraded if not, unless a live worker is still joining or
    rebalancing (it holds nothing meanwhile)."""
    if not any(w.partitions is not None for w in live):
        return Status.HEALTHY
    group = next((g for g in obs.groups if g.role == "worker"), None)
    counts = {t: n for t, n in obs.kafka.partitions.items() if group is not None and t in group.topics}
    unheld = unheld_partitions(live, counts)
    details["unheld_partitions"] = {t: list(ps) for t, ps in unheld.items()}
    if not unheld:
        n = len({p for w in live for ps in (w.partitions or {}).values() for p in ps})
        reasons.append(f"all {n} partitions held by {len(live)} live worker{'s' if len(live) != 1 else ''}")
        return Status.HEALTHY
    shown = "; ".join(f"{t} {format_partitions(ps)}" for t, ps in unheld.items())
    if any(w.state in ("starting", "recovering") for w in live):
        reasons.append(f"partitions no live worker holds yet (a rebalance is under way): {shown}")
        return Status.HEALTHY
    reasons.append(f"partitions no live worker holds: {shown}")
    return Status.DEGRADED


def _held_text(w: WorkerStatus) -> str:
    """``, partitions 0-2`` (per topic when they differ), or nothing when it does not say."""
    if w.partitions is None:
        return ""
    sets = {ps for ps in w.partitions.values()}
    if len(sets) <= 1:
        return f", partitions {format_partitions(next(iter(sets), ()))}"
    return ", partitions " + "; ".join(f"{t} {format_partitions(ps)}" for t, ps in w.partitions.items())


def _error_text(worker: WorkerStatus) -> str:
    error = worker.history.last_error
    return "none" if error is None else f"{error.type}: {error.message}"


def _judge_worker(w: WorkerStatus, now_ms: int, thresholds: Thresholds) -> tuple[Status, list[str]]:
    window_ms = thresholds.restart_window_s * 1000
    window = format_age(thresholds.restart_window_s)
    recent = [t for t in w.history.restart_times_ms if now_ms - t <= window_ms]
    error = w.history.last_error

    def ago(at_ms: int) -> str:
        return format_age(max(0.0, (now_ms - at_ms) / 1000))

    name = w.worker
    reasons: list[str] = []
    status = Status.HEALTHY
    if w.state == "restarting":
        status = Status.UNHEALTHY
        reasons.append(f"{name}: restarting (restart {w.history.restarts}, {len(recent)} in the last {window}) "
                       f"after {_error_text(w)}")
    elif len(recent) >= 2:
        status = Status.UNHEALTHY
        reasons.append(f"{name}: crash loop: {len(recent)} restarts in the last {window}, the last {ago(recent[-1])} ago; "
                       f"last error: {_error_text(w)}")
    elif w.state == "stalled":
        status = Status.UNHEALTHY
        stuck = format_age(w.stalled_for_s or 0.0)
        reasons.append(f"{name}: stalled: {w.waiting or 0:,} records wait and its group has committed nothing for {stuck}")
    elif recent:
        status = Status.DEGRADED
        reasons.append(f"{name}: restarted {ago(recent[-1])} ago after {_error_text(w)}")
    elif error is not None and now_ms - error.at_ms <= window_ms:
        status = Status.DEGRADED
        reasons.append(f"{name}: an error {ago(error.at_ms)} ago: {_error_text(w)}")
    failed = w.processing_errors
    if failed:
        status = worst([status, Status.DEGRADED])
        reasons.append(f"{name}: {failed:,} records could not be processed (dead-lettered as processing_error) "
                       f"since it started {ago(w.run_started_at_ms)} ago")
    if status is Status.HEALTHY:
        reasons.append(f"{name}: {w.state}, heartbeat {ago(w.heartbeat_at_ms)} ago, up {ago(w.run_started_at_ms)}"
                       + (f", {w.history.restarts} restarts" if w.history.restarts else "") + _held_text(w))
    elif w.partitions is not None:
        reasons.append(f"{name}: holds{_held_text(w)[1:]}")
    letters = {r: n for r, n in sorted(w.dead_letters.items()) if n}
    if letters:
        reasons.append(f"{name}: dead letters since it started: " + ", ".join(f"{r} {n:,}" for r, n in letters.items()))
    return status, reasons


def _worker_details(w: WorkerStatus, age_s: float, live: bool) -> dict[str, Any]:
    error = w.history.last_error
    return {
        "worker": w.worker, "state": w.state, "live": live, "heartbeat_at": w.heartbeat_at_ms,
        "seconds_since_heartbeat": round(age_s, 1), "started_at": w.history.started_at_ms,
        "run_started_at": w.run_started_at_ms, "restarts": w.history.restarts,
        "restart_times": list(w.history.restart_times_ms),
        "last_error": None if error is None else error.to_json(), "waiting": w.waiting, "stalled_for_s": w.stalled_for_s,
        "processing_errors": w.processing_errors, "dead_letters": dict(w.dead_letters),
        "partitions": None if w.partitions is None else {t: list(ps) for t, ps in w.partitions.items()},
        "state_dir": w.state_dir,
    }


def database_component(db: DatabaseObservation, expected_version: int) -> Component:
    details: dict[str, Any] = {
        "path": db.path, "exists": db.exists, "size_bytes": db.size_bytes, "wal_bytes": db.wal_bytes,
        "schema_version": db.schema_version, "quick_check": list(db.quick_check),
    }
    if not db.exists:
        return Component("database", Status.DEGRADED, (f"no database at {db.path} (has 'axmon sink' run with this --db?)",), details)
    if db.error is not None:
        return Component("database", Status.UNHEALTHY, (f"unreadable: {db.error}",), details)
    problems = [row for row in db.quick_check if row != "ok"]
    if problems or not db.quick_check:
        shown = "; ".join(problems[:3]) or "no answer"
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return Component("database", Status.UNHEALTHY, (f"quick_check failed: {shown}{more}",), details)
    version = db.schema_version
    size = "" if db.size_bytes is None else f", {format_bytes(db.size_bytes)}"
    if db.wal_bytes:
        size += f" (+ {format_bytes(db.wal_bytes)} WAL)"
    if version is not None and version < expected_version:
        return Component(
            "database", Status.DEGRADED,
            (f"schema version {version}, this axmon's is {expected_version}: migrated when the sink opens it",), details,
        )
    return Component("database", Status.HEALTHY, (f"quick_check ok, schema version {version}{size}",), details)


# -- formatting --------------------------------------------------------------------------------------


def format_age(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86_400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86_400} d {s % 86_400 // 3600} h"


def format_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n:,} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n:,} bytes"
