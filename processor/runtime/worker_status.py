"""The worker's status record: what ``axmon.worker-status`` carries, pure (no I/O).

Each worker process publishes one :class:`WorkerStatus` every few seconds (its heartbeat) to the
compacted ``<prefix>worker-status`` topic, keyed by its id ``host:pid``, from a thread of its
own with its own producer, so that it goes on beating (and can say ``stalled``) whatever Faust
is stuck in. It publishes once more with ``state`` ``restarting`` before it starts itself again,
and ``stopped`` when it stops cleanly. ``axmon health`` reads the latest record of every worker
(:mod:`processor.ops.health`).

A restart is an ``exec`` of the same process (same pid, so the same key): what must outlive it
(when the worker first started, the times of its restarts, its last error) travels in the
environment variable :data:`HISTORY_ENV`, as :class:`History`'s JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

HISTORY_ENV = "AXMON_WORKER_HISTORY"
STATES = ("starting", "recovering", "running", "stalled", "restarting", "stopped")
"""``starting``: Faust has not finished its first recovery; ``recovering``: it is rebalancing or
recovering its tables; ``stalled``: records wait and the group has committed nothing for half
the stall timeout (the watchdog restarts it at the full timeout); ``restarting``: it failed and
starts itself again after a backoff; ``stopped``: it stopped cleanly."""
RECENT_RESTARTS = 20
"""How many restart times a record keeps (the newest)."""


@dataclass(frozen=True, slots=True)
class LastError:
    at_ms: int
    type: str
    """The exception's class name (``stalled`` or ``exit`` for a restart without one)."""
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at_ms, "type": self.type, "message": self.message}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> LastError:
        return cls(int(doc["at"]), str(doc["type"]), str(doc["message"]))


@dataclass(frozen=True, slots=True)
class History:
    """What a worker's restarts (``exec`` in place) carry over."""

    started_at_ms: int
    """When the first run of this process started."""
    restart_times_ms: tuple[int, ...] = ()
    """The newest :data:`RECENT_RESTARTS` restarts (epoch ms), oldest first."""
    restarts: int = 0
    """Every restart since the first run."""
    last_error: LastError | None = None

    def restarted(self, at_ms: int, error: LastError) -> History:
        times = (*self.restart_times_ms, at_ms)[-RECENT_RESTARTS:]
        return replace(self, restart_times_ms=times, restarts=self.restarts + 1, last_error=error)

    def failed(self, error: LastError) -> History:
        return replace(self, last_error=error)

    def to_text(self) -> str:
        return orjson.dumps({
            "started_at": self.started_at_ms, "restart_times": list(self.restart_times_ms), "restarts": self.restarts,
            "last_error": None if self.last_error is None else self.last_error.to_json(),
        }).decode()

    @classmethod
    def from_text(cls, text: str | None, now_ms: int) -> History:
        """The carried history, or a fresh one (first run, or a value that is not ours)."""
        if not text:
            return cls(now_ms)
        try:
            doc = orjson.loads(text)
            error = doc.get("last_error")
            return cls(int(doc["started_at"]), tuple(int(t) for t in doc.get("restart_times", ())),
                       int(doc.get("restarts", 0)), None if error is None else LastError.from_json(error))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return cls(now_ms)


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One heartbeat of one worker process."""

    worker: str
    """``host:pid``, the record's key."""
    host: str
    pid: int
    group: str
    state: str
    """One of :data:`STATES`."""
    heartbeat_at_ms: int
    run_started_at_ms: int
    """When this run (since the last restart) started."""
    history: History
    interval_s: float
    """How often it beats."""
    stall_timeout_s: float
    """The watchdog's limit (0: no watchdog)."""
    waiting: int | None = None
    """Records waiting for the group, as the watchdog last saw them (``None``: not measured)."""
    stalled_for_s: float | None = None
    """How long records have waited with no committed offset of the group moving."""
    counters: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """Since this run started: per core (``lifecycle``, ``metrics``, ``alerts``) its counters,
    and ``dead_letters`` by reason."""
    partitions: Mapping[str, tuple[int, ...]] | None = None
    """The partitions Faust has assigned it, per source topic (``{}`` while it holds none, during
    a rebalance); ``None``: a worker that does not say (an older version)."""
    state_dir: str | None = None
    """Its own directory on its machine (Faust's data directory)."""

    @property
    def dead_letters(self) -> Mapping[str, int]:
        return self.counters.get("dead_letters", {})

    @property
    def processing_errors(self) -> int:
        """Records whose processing raised, since this run started (dead-lettered as
        ``processing_error``, or counted so by a core)."""
        by_cores = sum(int(c.get("processing_error", 0)) for name, c in self.counters.items() if name != "dead_letters")
        return max(int(self.dead_letters.get("processing_error", 0)), by_cores)

    def to_json(self) -> dict[str, Any]:
        h = self.history
        return {
            "worker": self.worker, "host": self.host, "pid": self.pid, "group": self.group, "state": self.state,
            "heartbeat_at": self.heartbeat_at_ms, "started_at": h.started_at_ms, "run_started_at": self.run_started_at_ms,
            "restarts": h.restarts, "restart_times": list(h.restart_times_ms),
            "last_error": None if h.last_error is None else h.last_error.to_json(),
            "interval_s": self.interval_s, "stall_timeout_s": self.stall_timeout_s,
            "waiting": self.waiting, "stalled_for_s": self.stalled_for_s,
            "counters": {name: dict(c) for name, c in self.counters.items()},
            "partitions": None if self.partitions is None else {t: list(ps) for t, ps in sorted(self.partitions.items())},
            "state_dir": self.state_dir,
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_json())

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> WorkerStatus:
        """Raises ``KeyError``/``TypeError``/``ValueError`` on a value that is not a status."""
        error = doc.get("last_error")
        history = History(int(doc["started_at"]), tuple(int(t) for t in doc.get("restart_times", ())),
                          int(doc.get("restarts", 0)), None if error is None else LastError.from_json(error))
        waiting, stalled = doc.get("waiting"), doc.get("stalled_for_s")
        counters = {str(name): {str(k): int(v) for k, v in c.items()} for name, c in (doc.get("counters") or {}).items()}
        held = doc.get("partitions")
        partitions = None if held is None else {str(t): tuple(sorted(int(p) for p in ps)) for t, ps in held.items()}
        state_dir = doc.get("state_dir")
        state = str(doc["state"])
        if state not in STATES:
            raise ValueError(f"unknown worker state {state!r}")
        return cls(
            worker=str(doc["worker"]), host=str(doc["host"]), pid=int(doc["pid"]), group=str(doc["group"]), state=state,
            heartbeat_at_ms=int(doc["heartbeat_at"]), run_started_at_ms=int(doc["run_started_at"]), history=history,
            interval_s=float(doc["interval_s"]), stall_timeout_s=float(doc["stall_timeout_s"]),
            waiting=None if waiting is None else int(waiting), stalled_for_s=None if stalled is None else float(stalled),
            counters=counters, partitions=partitions, state_dir=None if state_dir is None else str(state_dir),
        )


def decode_status(value: bytes | None) -> WorkerStatus | None:
    """A record's status, or ``None`` for a tombstone or a value that is not one."""
    if value is None:
        return None
    try:
        return WorkerStatus.from_json(orjson.loads(value))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def stall_state(*, started: bool, busy: bool, stalled_for_s: float, stall_timeout_s: float) -> str:
    """The state the watchdog's observations give: ``stalled`` once records have waited with
    nothing committed for half the limit after which it restarts the worker (ten times the
    limit while Faust starts, rebalances or recovers)."""
    limit = stall_timeout_s * (10 if busy or not started else 1)
    if stall_timeout_s > 0 and stalled_for_s >= limit / 2:
        return "stalled"
    if not started:
        return "starting"
    return "recovering" if busy else "running"


def unheld_partitions(statuses: Iterable[WorkerStatus], counts: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
    """Per topic of ``counts`` (topic -> partition count), the partitions none of ``statuses``
    says it holds (topics where all are held are left out). Statuses that do not say what they
    hold (``partitions`` ``None``) hold nothing here."""
    held: dict[str, set[int]] = {}
    for status in statuses:
        for topic, partitions in (status.partitions or {}).items():
            held.setdefault(topic, set()).update(partitions)
    unheld = {topic: tuple(p for p in range(n) if p not in held.get(topic, set())) for topic, n in sorted(counts.items())}
    return {topic: ps for topic, ps in unheld.items() if ps}


def format_partitions(partitions: Iterable[int]) -> str:
    """``0-2,5``: sorted, runs joined."""
    ordered = sorted(set(partitions))
    runs: list[str] = []
    start = prev = None
    for p in [*ordered, None]:
        if p is not None and prev is not None and p == prev + 1:
            prev = p
            continue
        if start is not None:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = p
    return ",".join(runs) or "none"
