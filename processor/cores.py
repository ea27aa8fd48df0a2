"""The processing cores: per-partition logic around the pure folds, shared by the Faust worker
and by replay. A core keeps its state in a :class:`~processor.records.Store` and returns the
records to publish; it never does I/O itself.

Decisions that shape state (lateness, eviction, window closing) are judged by each partition's
stream time: the largest event time applied so far in that partition, in offset order. A replay
reads each partition in the same order and so decides the same. Stream time is not stored on
its own: every applied event raises the ``t`` of the entry it lands in, and the entry holding
the maximum is never removed before stream time moves on, so after a restart the largest ``t``
among a partition's entries is its stream time again. (The metrics core keeps two stream times
per partition, one per lane, each recovered from its own lane's entries: see
:class:`MetricsCore`.)

Every key is folded in one partition only, its home (:mod:`processor.routing`): a record on
another partition is not applied there (it touches neither that partition's entries nor its
stream time) but returned as a copy for its home, and the copy is folded where it lands. So all
the offsets an entry ever sees are offsets of one partition, its ``p``.

Redelivery: every entry carries the offset of the last event applied to it (``o``); an event at
or below it was applied already. Then the core publishes the entry's current state again, which
also repairs a derived record lost in the crash that caused the redelivery. A lifecycle entry
that took forwarded copies also keeps, per original source ``"topic/partition"``, the original
offset of the last copy applied (``f``): a second copy of the same original (forwarded again
after a crash of the forwarding side) changes nothing and publishes nothing.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from processor.alerting import AlertCore, stale_alert
from processor.derived import derived_origins, derived_samples, in_derived_lane
from processor.guard import Guard, StagedStore
from processor.execution import ExecutionState, apply, snapshot, state_from_json, state_to_json
from processor.records import Emit, Origin, Store, Stream, dead_letter, json_emit
from processor.routing import Router, copies_applied, copy_seen
from processor.stats import Contribution, TenantStats
from processor.windows import MetricWindow, rollup_key, series_of, window_key, window_start
from schemas.codec import decode_event, encode_event
from schemas.errors import InvalidEvent
from schemas.events import Event, LifecycleEvent, MetricRecorded
from schemas.topics import series_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FoldConfig:
    window_ms: int = 60_000
    """Tumbling window size of metric rollups."""
    grace_ms: int = 300_000
    """How long after its end (in stream time) a window still takes samples."""
    execution_horizon_ms: int = 3_600_000
    """How long (in stream time) a finished execution stays in the table for late step events
    and duplicates; then it is evicted (its last state is in the sink already)."""
    sweep_interval_ms: int = 10_000
    """Evict and close whenever stream time crosses a multiple of this."""
    marker_ms: int = 3_600_000
    """How long (in stream time) a late marker and a closed window's final rollup stay. A
    redelivery must not reach further back than this, so the worker must commit at least once
    per this much stream time (it commits every second)."""
    evicted_keep_ms: int = 6 * 3_600_000
    """How long (in stream time) an evicted execution's marker keeps its final fold state, so
    that a late event for it rehydrates the whole execution; also how far behind (beyond the
    horizon) an event of an execution the worker holds nothing for is still taken (see
    :class:`LifecycleCore`). At least ``marker_ms``."""

    @property
    def derived_keep_ms(self) -> int:
        """How long (in the derived lane's stream time) a closed window of a derived series
        keeps its whole state, to take the derived samples that come late: the execution
        horizon (lifecycle events are accepted up to that far behind their partition's stream
        time, or ``lifecycle_retention_ms`` when it is rehydrated or never seen) plus
        ``marker_ms`` (for the skew between lifecycle partitions)."""
        return self.execution_horizon_ms + self.evicted_keep_ms + self.marker_ms

    @property
    def lifecycle_retention_ms(self) -> int:
        """How far behind its partition's stream time a lifecycle event of an execution the
        worker holds nothing for is still folded (older: dead-lettered as ``late``)."""
        return self.execution_horizon_ms + self.evicted_keep_ms


def _partition_stream_time(store: Store, partition: int, belongs: Callable[[dict[str, Any]], bool] | None = None) -> int:
    return max(
        (v["t"] for _, v in store.items() if v.get("p") == partition and (belongs is None or belongs(v))), default=0
    )


class _StreamTimes:
    """Cached per-partition stream times, recomputed from the store when unknown (from the
    entries that ``belongs`` accepts, when given: one lane of a partition)."""

    def __init__(self, store: Store, belongs: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self._store = store
        self._belongs = belongs
        self._times: dict[int, int] = {}

    def get(self, partition: int) -> int:
        if partition not in self._times:
            self._times[partition] = _partition_stream_time(self._store, partition, self._belongs)
        return self._times[partition]

    def advance(self, partition: int, at: int) -> tuple[int, int]:
        """Raise the partition's stream time to ``at``; returns (before, after)."""
        before = self.get(partition)
        after = max(before, at)
        self._times[partition] = after
        return before, after

    def forget(self) -> None:
        self._times.clear()


class _Deadlines:
    """Per-partition min-heaps of ``(due stream time, key)``: the entries a sweep must look at,
    so that a sweep costs what it does rather than a scan of the table. Built from the store
    the first time a partition is swept (after a restart: lazily); entries may be stale
    (changed or gone since), so a sweep checks each against the store."""

    def __init__(self, store: Store, due: Callable[[dict[str, Any]], int | None]) -> None:
        self._store = store
        self._due = due
        self._heaps: dict[int, list[tuple[int, str]]] = {}

    def _heap(self, partition: int) -> list[tuple[int, str]]:
        heap = self._heaps.get(partition)
        if heap is None:
            heap = []
            for key, entry in self._store.items():
                if entry.get("p") == partition and (due := self._due(entry)) is not None:
                    heap.append((due, key))
            heapq.heapify(heap)
            self._heaps[partition] = heap
        return heap

    def push(self, partition: int, due: int, key: str) -> None:
        heap = self._heaps.get(partition)
        if heap is not None:  # else it is built from the store, which holds the entry already
            heapq.heappush(heap, (due, key))

    def due(self, partition: int, now: int) -> list[tuple[str, dict[str, Any]]]:
        """The entries of ``partition`` due at stream time ``now``, in (due, key) order; an
        entry that changed and is due later is put back."""
        heap = self._heap(partition)
        found: dict[str, tuple[int, dict[str, Any]]] = {}
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            entry = self._store.get(key)
            if entry is None or key in found:
                continue
            due = self._due(entry)
            if due is None:
                continue
            if due > now:
                heapq.heappush(heap, (due, key))
                continue
            found[key] = (due, entry)
        return [(key, entry) for key, (_, entry) in sorted(found.items(), key=lambda item: (item[1][0], item[0]))]

    def forget(self) -> None:
        self._heaps.clear()


def _crossed(before: int, after: int, interval: int) -> bool:
    return after // interval > before // interval


def _meta_key(p: int) -> str:
    return f"\x00meta/{p}"


def _late_key(p: int, o: int) -> str:
    return f"\x00late/{p}/{o}"


def _record_late(store: Store, p: int, o: int, stream_time: int, emit: Emit, *, lane: dict[str, Any] | None = None) -> list[Emit]:
    """Dead-letter a late record, and remember the decision: whether a record is late depends
    on the stream time at its offset, which a redelivery after a crash cannot know, so the
    redelivery repeats the stored decision (see :func:`_late_again`). ``lane``: fields that
    say which of the partition's lanes ``stream_time`` belongs to."""
    store[_late_key(p, o)] = {"p": p, "o": o, "t": 0, "late": stream_time, "dl": orjson.loads(emit.value or b"{}"), **(lane or {})}
    return [emit]


def _late_again(store: Store, p: int, o: int) -> list[Emit] | None:
    marker = store.get(_late_key(p, o))
    if marker is None:
        return None
    dl = marker["dl"]
    return [json_emit(Stream.DEAD_LETTER, f"{dl['topic']}/{dl['partition']}/{dl['offset']}", dl)]


def decode_input(expected: type[Event], raw: bytes | None, origin: Origin, key: bytes | None) -> Event | Emit:
    """The event in a source record, or the dead letter that says why there is none."""
    try:
        event = decode_event(raw or b"")
    except InvalidEvent as exc:
        return dead_letter(exc.reason, exc.detail, origin, key, raw)
    if not isinstance(event, expected):
        return dead_letter("wrong_topic", f"{event.TYPE} does not belong on {origin.topic}", origin, key, raw)
    return event


# -- lifecycle ---------------------------------------------------------------------------------


class LifecycleCore:
    """Folds lifecycle events into the executions table (key: execution id).

    Entry: ``{"p", "o", "t", "ts", "s"}`` (and ``"f"``, see the module docstring):
    partition, last applied offset, last event time, the stream time at which it became
    terminal, the fold state. An evicted execution leaves a marker
    ``{"p", "o", "t", "evicted": stream time, "eo", "es", "tenant", "c", "s"}`` (the evicting
    offset and sequence of its absorb, its absorbed contribution, its final fold state) for
    ``evicted_keep_ms``.

    **Late events.** The horizon is a memory bound, not a correctness limit:

    - An event of an execution held (live or as a marker) is folded however old it is. A marker
      is *rehydrated*: its fold state is the state of all the events before, so the new state is
      exact, the execution-state record is the whole row again (the sink replaces it), derived
      samples are those of the new origins only (:func:`derived_origins` of the marker's state),
      and the stats get a ``reopen`` op: take back what the absorb added, then set the new
      contribution (:meth:`TenantStats.reopen`). The entry keeps one generation per eviction
      (``"re"``: absorb offset and sequence, rehydrating offset, absorbed contribution), so a
      redelivery sends what each offset first sent (:func:`_contribution_op`) and the absorbs a
      crash may have lost; the entry is evicted again a horizon later.
    - An event of an execution the worker holds nothing for starts it, unless it is
      ``lifecycle_retention_ms`` (horizon + ``evicted_keep_ms``) or more behind the partition's
      stream time: then it is dead-lettered as ``late``. An execution whose marker expired
      ended at least that long ago in stream time, so its late events are refused rather than
      starting a partial state that would overwrite its row - except an event dated after the
      stream time its execution ended at (a clock far ahead): that one starts a partial row.

    Cost per execution: its fold state (JSON: ~580 bytes plus ~300 per step; 2.4 kB with 6 steps) in the table
    for a horizon after it ended, then the same again as a marker for ``evicted_keep_ms``
    (default 6 h of stream time), and the derived lane keeps closed windows whole for
    ``derived_keep_ms`` so that these executions' derived samples still count once.
    """

    def __init__(
        self,
        store: Store,
        config: FoldConfig = FoldConfig(),
        *,
        derive: bool = True,
        clock: Callable[[], int] | None = None,
        stale_after_ms: int = 0,
        router: Router | None = None,
    ) -> None:
        self.store = store = StagedStore(store)
        self.config = config
        self.router = router or Router(None)
        self.derive = derive
        """Publish derived samples and stats contributions. Replay turns this off: it reads
        derived samples back from the metrics topic and the sink keeps the stats."""
        self.clock = clock
        """The wall clock (epoch ms) for liveness; ``None`` (replay): no liveness."""
        self.stale_after_ms = stale_after_ms
        self._quiet: dict[int, list[tuple[int, str]]] = {}
        """Per partition: a heap of (wall time the execution goes stale, id), built lazily."""
        self.times = _StreamTimes(store)
        self.deadlines = _Deadlines(store, self._due)
        self.counters: dict[str, int] = {}
        self._eviction_index: dict[int, dict[int, list[tuple[str, dict[str, Any]]]]] = {}
        self._states: dict[str, tuple[Any, ExecutionState]] = {}
        """eid -> (the fold state as stored last, the state it encodes)."""
        self.guard = Guard([store], self.forget, self.counters)

    def _state_of(self, eid: str, stored: Any) -> ExecutionState:
        """:func:`state_from_json` of a stored fold state, without decoding it again when it is
        the very object this core made last for ``eid`` (stored values are never mutated)."""
        known = self._states.get(eid)
        if known is not None and known[0] is stored:
            return known[1]
        return state_from_json(stored)

    def _state_json(self, eid: str, state: ExecutionState) -> Any:
        stored = state_to_json(state)
        if len(self._states) >= _STATES_KEPT:
            self._states.clear()
        self._states[eid] = (stored, state)
        return stored

    def _due(self, entry: dict[str, Any]) -> int | None:
        """When (in stream time) a sweep has something to do with ``entry``."""
        if "late" in entry:
            return int(entry["late"]) + self.config.marker_ms
        if "evicted" in entry:
            return int(entry["evicted"]) + max(self.config.evicted_keep_ms, self.config.marker_ms)
        if entry.get("ts") is not None:
            return int(entry["ts"]) + self.config.execution_horizon_ms
        return None

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def process(self, event: LifecycleEvent, origin: Origin, raw: bytes, key: bytes | None) -> list[Emit]:
        """Fold one event, all or nothing (:class:`~processor.guard.Guard`)."""
        return self.guard.run(lambda: self._process(event, origin, raw, key), origin, key, raw)

    def _process(self, event: LifecycleEvent, origin: Origin, raw: bytes, key: bytes | None) -> list[Emit]:
        p, o = origin.partition, origin.offset
        if self.router.misrouted(event, p):
            self._count("misrouted")
            return [self.router.forward(Stream.WORKFLOW_EVENTS, event, origin, raw, key)]
        again = _late_again(self.store, p, o)
        if again is not None:
            self._count("redelivered")
            return again
        horizon = self.config.execution_horizon_ms
        stream_time = self.times.get(p)
        eid = event.execution_id
        entry = self.store.get(eid)
        if entry is not None and o <= entry["o"]:
            self._count("redelivered")
            return self._republish(eid, entry, p, o)
        if entry is not None and copy_seen(entry.get("f"), origin):
            self._count("redelivered")  # forwarded again: the forwarding side crashed, not this one
            return []
        retention = self.config.lifecycle_retention_ms
        if entry is not None and "evicted" in entry and "s" not in entry:
            self._count("late")  # a marker written before markers kept the state
            detail = f"execution {eid} was evicted without its state"
            return self._late(p, o, stream_time, dead_letter("late", detail, origin, key, raw))
        if entry is None and event.occurred_at + retention <= stream_time:
            self._count("late")
            detail = (f"event time {event.occurred_at} is {retention} ms or more behind the stream "
                      f"({stream_time}) and the worker holds no state of execution {eid}")
            return self._late(p, o, stream_time, dead_letter("late", detail, origin, key, raw))
        rehydrated = entry is not None and "evicted" in entry
        if rehydrated:
            assert entry is not None
            self._count("rehydrated")
            self._eviction_index.pop(p, None)
        old = self._state_of(eid, entry["s"]) if entry is not None else None
        new = apply(old, event)
        before, after = self.times.advance(p, event.occurred_at)
        held_ts = None if entry is None or rehydrated else entry["ts"]
        terminal_since = held_ts if held_ts is not None else (after if new.terminal else None)
        stored = {"p": p, "o": o, "t": new.last_event_at, "ts": terminal_since, "s": self._state_json(eid, new)}
        if rehydrated:
            assert entry is not None
            # one generation per eviction: its absorb (offset, seq), the rehydrating offset and
            # what the absorb took (a reopen takes it back)
            stored["re"] = [*entry.get("re", ()), [entry["eo"], entry["es"], o, entry["c"]]]
        elif entry is not None and "re" in entry:
            stored["re"] = entry["re"]
        if (copies := copies_applied(None if entry is None else entry.get("f"), origin)) is not None:
            stored["f"] = copies
        emits: list[Emit] = []
        if self.clock is not None:
            seen = self.clock()
            stored["w"] = seen
            if entry is not None and entry.get("stale") is not None:
                self._count("stale_cleared")
                emits.append(_alert_emit(stale_alert(eid, new.tenant_id, entry["stale"], p, resolved_at=seen)))
            if terminal_since is None and self.stale_after_ms > 0 and p in self._quiet:
                heapq.heappush(self._quiet[p], (seen + self.stale_after_ms, eid))
        self.store[eid] = stored
        if terminal_since is not None and held_ts is None:
            self.deadlines.push(p, terminal_since + horizon, eid)
        self._count("applied")
        emits = self._publish(stored, p, o, previous=old, current=new) + emits
        if _crossed(before, after, self.config.sweep_interval_ms):
            emits += self.sweep(p, o)
        return emits

    def _publish(
        self,
        entry: dict[str, Any],
        p: int,
        o: int,
        *,
        previous: ExecutionState | None = None,
        current: ExecutionState | None = None,
        everything: bool = False,
    ) -> list[Emit]:
        state = current if current is not None else state_from_json(entry["s"])
        view = snapshot(state)
        emits = [self._state_emit(entry, view)]
        if not self.derive:
            return emits
        contribution = Contribution(view["status"], view["duration"])
        if "re" in entry:  # rehydrated: see _contribution_op
            emits.append(_contribution_op(state.execution_id, state.tenant_id, entry["re"], contribution, p, o))
        elif everything or previous is None or _status_and_duration(previous) != (contribution.status, contribution.duration):
            emits.append(_stats_set(state.execution_id, state.tenant_id, contribution, p, o, seq=0))
        known = set() if everything or previous is None else derived_origins(previous)
        for sample in derived_samples(state, skip=known):
            emits.append(Emit(Stream.METRICS, series_key(sample.tenant_id, sample.metric_type, sample.labels), encode_event(sample)))
        return emits

    @staticmethod
    def _state_emit(entry: dict[str, Any], view: dict[str, Any] | None = None) -> Emit:
        """The execution-state record of an entry (with ``stale_since`` while it is stale)."""
        if view is None:
            view = snapshot(state_from_json(entry["s"]))
        if entry.get("stale") is not None:
            view = {**view, "stale_since": entry["stale"]}
        return json_emit(Stream.EXECUTION_STATE, view["id"], view)

    def _republish(self, eid: str, entry: dict[str, Any], p: int, o: int) -> list[Emit]:
        """A redelivered event (offset ``o`` was applied before a crash): publish again what
        processing it published, from the current state, in case the crash lost it."""
        if "evicted" in entry:
            # Its absorb message is sent again when the evicting offset is redelivered (below):
            # origins must never run ahead of the offset being processed.
            tenant, (status, duration) = entry["tenant"], entry["c"]
            emits = [_contribution_op(eid, tenant, entry.get("re", []), Contribution(status, duration), p, o)]
        else:
            emits = self._publish(entry, p, o, everything=True)
        for marker_eid, marker in self._evicted_at(p).get(o, ()):
            if "evicted" in marker and marker["eo"] == o:
                emits.append(Emit(Stream.EXECUTION_STATE, marker_eid.encode(), None))
                emits.append(_stats_absorb(marker_eid, marker["tenant"], p, o, seq=marker["es"]))
            for eo, es, _, _ in marker.get("re", ()):  # rehydrated since: the absorb may have been lost
                if eo == o:
                    emits.append(_stats_absorb(marker_eid, state_from_json(marker["s"]).tenant_id, p, o, seq=es))
        return emits

    def _evicted_at(self, p: int) -> dict[int, list[tuple[str, dict[str, Any]]]]:
        """Markers of partition ``p`` by the offset whose processing evicted them (built once
        per partition after a restart; only redeliveries need it)."""
        index = self._eviction_index.get(p)
        if index is None:
            index = {}
            for eid, entry in self.store.items():
                if entry.get("p") != p:
                    continue
                offsets = {entry["eo"]} if "evicted" in entry else set()
                offsets.update(generation[0] for generation in entry.get("re", ()))
                for eo in sorted(offsets):
                    index.setdefault(eo, []).append((eid, entry))
            self._eviction_index[p] = index
        return index

    def _late(self, p: int, o: int, stream_time: int, emit: Emit) -> list[Emit]:
        self.deadlines.push(p, stream_time + self.config.marker_ms, _late_key(p, o))
        return _record_late(self.store, p, o, stream_time, emit)

    def forget(self) -> None:
        """Drop what is cached from the store (after a restart or a rebalance)."""
        self.times.forget()
        self.deadlines.forget()
        self._eviction_index.clear()
        self._quiet.clear()

    def check_stale(self, p: int, now_ms: int) -> list[Emit]:
        """Liveness, on the wall clock (called on a tick for partition ``p``): flag each running
        or pending execution of ``p`` with no event for ``stale_after_ms`` as stale - its state
        is published again with ``stale_since`` and a built-in alert fires; its next event
        clears both. The first check of a partition after a (re)start publishes the alerts of
        executions already stale again, in case a crash lost them."""
        if self.clock is None or self.stale_after_ms <= 0:
            return []
        emits: list[Emit] = []
        heap = self._quiet.get(p)
        if heap is None:
            heap = []
            for eid, entry in self.store.items():
                if entry.get("p") != p or "s" not in entry or entry.get("ts") is not None or "w" not in entry:
                    continue
                if entry.get("stale") is not None:
                    tenant = state_from_json(entry["s"]).tenant_id
                    emits.append(_alert_emit(stale_alert(eid, tenant, entry["stale"], p)))
                else:
                    heap.append((int(entry["w"]) + self.stale_after_ms, eid))
            heapq.heapify(heap)
            self._quiet[p] = heap
        while heap and heap[0][0] <= now_ms:
            due, eid = heapq.heappop(heap)
            entry = self.store.get(eid)
            if entry is None or "s" not in entry or entry.get("ts") is not None or entry.get("stale") is not None:
                continue
            if int(entry.get("w", 0)) + self.stale_after_ms != due:
                continue  # an event came since: a newer heap item stands for it
            flagged = {**entry, "stale": now_ms}
            self.store[eid] = flagged
            self._count("stale")
            emits.append(self._state_emit(flagged))
            tenant = state_from_json(entry["s"]).tenant_id
            emits.append(_alert_emit(stale_alert(eid, tenant, now_ms, p)))
        return emits


    def sweep(self, p: int, o: int) -> list[Emit]:
        """Evict executions finished more than a horizon ago; drop their markers later.

        A marker keeps what is needed to redo the eviction's messages: the tenant, the final
        contribution, and the offset and sequence of its absorb message."""
        stream_time = self.times.get(p)
        emits: list[Emit] = []
        seq = _FIRST_SWEEP_SEQ
        for eid, entry in self.deadlines.due(p, stream_time):
            if "late" in entry or "evicted" in entry:
                del self.store[eid]
                continue
            if entry["ts"] is not None:
                view = snapshot(state_from_json(entry["s"]))
                marker = {
                    "p": p, "o": entry["o"], "t": entry["t"], "evicted": stream_time, "eo": o, "es": seq,
                    "tenant": view["tenant_id"], "c": [view["status"], view["duration"]], "s": entry["s"],
                }
                marker.update({k: entry[k] for k in ("f", "re") if k in entry})
                self.store[eid] = marker
                self.deadlines.push(p, stream_time + max(self.config.evicted_keep_ms, self.config.marker_ms), eid)
                emits.append(Emit(Stream.EXECUTION_STATE, eid.encode(), None))
                emits.append(_stats_absorb(eid, view["tenant_id"], p, o, seq))
                seq += 1
                self._count("evicted")
        self._eviction_index.pop(p, None)
        return emits


_STATES_KEPT = 4_096
"""At most this many executions' decoded fold states are kept (then forgotten at once)."""
_FIRST_SWEEP_SEQ = 1
"""Origin sequences within one source offset: 0 the processed execution's contribution,
1... the absorbs of a sweep at that offset."""


def _status_and_duration(state: ExecutionState) -> tuple[str, int | None]:
    """What :func:`snapshot` says of ``status`` and ``duration``, without building it."""
    started = state.start.at if state.start else None
    ended = state.end.at if state.end else None
    return state.status, (ended - started if ended is not None and started is not None else None)


def _contribution_op(eid: str, tenant: str, generations: list[list[Any]], current: Contribution, p: int, o: int) -> Emit:
    """The stats op that processing offset ``o`` of a rehydrated execution sent (or sends): before
    its first rehydration a ``set`` (of what the first eviction absorbed: the last set before it),
    from a rehydration on a ``reopen`` that takes that eviction's absorbed contribution back (of
    what the next eviction absorbed, or of ``current`` after the last). So a redelivery resends
    what the offset first sent, and the stats never take back what they did not absorb."""
    if not generations or o < generations[0][2]:
        absorbed = Contribution(*generations[0][3]) if generations else current
        return _stats_set(eid, tenant, absorbed, p, o, seq=0)
    k = max(n for n, generation in enumerate(generations) if generation[2] <= o)
    now = Contribution(*generations[k + 1][3]) if k + 1 < len(generations) else current
    return _stats_set(eid, tenant, now, p, o, seq=0, absorbed=Contribution(*generations[k][3]))


def _alert_emit(record: dict[str, Any]) -> Emit:
    return json_emit(Stream.ALERTS, record["id"], record)


def _stats_set(eid: str, tenant: str, c: Contribution, p: int, o: int, seq: int, *, absorbed: Contribution | None = None) -> Emit:
    """A ``set`` op, or with ``absorbed`` (the execution was evicted and rehydrated) a
    ``reopen``: the stats take back what they absorbed of it, unless it is open already."""
    msg: dict[str, Any] = {"op": "set", "tenant": tenant, "execution_id": eid, "status": c.status, "duration": c.duration,
                           "p": p, "o": o, "seq": seq}
    if absorbed is not None:
        msg.update(op="reopen", absorbed_status=absorbed.status, absorbed_duration=absorbed.duration)
    return json_emit(Stream.STATS_CHANGES, tenant, msg)


def _stats_absorb(eid: str, tenant: str, p: int, o: int, seq: int) -> Emit:
    return json_emit(
        Stream.STATS_CHANGES,
        tenant,
        {"op": "absorb", "tenant": tenant, "execution_id": eid, "p": p, "o": o, "seq": seq},
    )


# -- stats -------------------------------------------------------------------------------------


class StatsCore:
    """Folds contribution messages into per-tenant stats (key: tenant id)."""

    def __init__(self, store: Store) -> None:
        self.store = StagedStore(store)
        self.counters: dict[str, int] = {}
        self.guard = Guard([self.store], lambda: None, self.counters)

    def process(self, raw: bytes, origin: Origin, key: bytes | None) -> list[Emit]:
        """Fold one message, all or nothing (:class:`~processor.guard.Guard`)."""
        return self.guard.run(lambda: self._process(raw, origin, key), origin, key, raw)

    def _process(self, raw: bytes, origin: Origin, key: bytes | None) -> list[Emit]:
        """One record: an op, or several of one tenant merged by a batch
        (:mod:`processor.coalesce`: ``{"tenant", "ops": [...]}``), folded in order. An op that
        is not one is dead-lettered; the others count."""
        try:
            msg = orjson.loads(raw)
            ops = msg["ops"] if isinstance(msg, dict) and "ops" in msg else [msg]
            if not isinstance(ops, list):
                raise TypeError("ops is not a list")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            return [dead_letter("invalid_internal", f"bad stats change: {exc!r}", origin, key, raw)]
        emits: list[Emit] = []
        seen: dict[str, TenantStats] = {}
        changed: set[str] = set()
        for op in ops:
            problem = self._apply(op, seen, changed)
            if problem is not None:
                emits.append(dead_letter("invalid_internal", problem, origin, key, raw))
        for tenant, stats in seen.items():
            if tenant in changed:
                self.store[tenant] = stats.to_json()
            emits.append(json_emit(Stream.WORKFLOW_STATS, tenant, stats.view()))
        return emits

    def _apply(self, msg: Any, seen: dict[str, TenantStats], changed: set[str]) -> str | None:
        """Fold one op into ``seen`` (tenant -> its stats so far; ``changed``: those it changed);
        the reason it is not an op, or ``None``."""
        try:
            tenant = str(msg["tenant"])
            partition, mark = int(msg["p"]), (int(msg["o"]), int(msg["seq"]))
            op = msg["op"]
        except (KeyError, TypeError, ValueError) as exc:
            return f"bad stats change: {exc!r}"
        stats = seen.get(tenant)
        if stats is None:
            entry = self.store.get(tenant)
            stats = TenantStats.from_json(entry) if entry is not None else TenantStats(tenant)
        if op == "set":
            updated = stats.set(str(msg["execution_id"]), Contribution(str(msg["status"]), msg.get("duration")), partition, mark)
        elif op == "absorb":
            updated = stats.absorb(str(msg["execution_id"]), partition, mark)
        elif op == "reopen":
            absorbed = Contribution(str(msg["absorbed_status"]), msg.get("absorbed_duration"))
            contribution = Contribution(str(msg["status"]), msg.get("duration"))
            updated = stats.reopen(str(msg["execution_id"]), absorbed, contribution, partition, mark)
        else:
            return f"unknown stats op {op!r}"
        if updated is not stats:
            changed.add(tenant)
        seen[tenant] = updated
        return None


# -- metrics -----------------------------------------------------------------------------------


def admission_limit(config: FoldConfig, sample: MetricRecorded) -> tuple[bool, int]:
    """The lane of ``sample`` (``True``: the derived lane) and the stream time of that lane from
    which the sample is refused as late. The worker (:class:`MetricsCore`), the sink's raw gate
    and replay all decide with this one rule, so raw rows and rollups hold the same samples.

    Raw lane: until its window closes (end + grace). Derived lane: ``derived_keep_ms`` longer,
    as long as a closed window of the lane keeps its state to be reopened."""
    derived = in_derived_lane(sample.metric_type, sample.labels)
    start = window_start(sample.occurred_at, config.window_ms)
    closes = start + config.window_ms + config.grace_ms
    return derived, closes + config.derived_keep_ms if derived else closes


def _in_lane(derived: bool) -> Callable[[dict[str, Any]], bool]:
    return (lambda entry: bool(entry.get("d"))) if derived else (lambda entry: not entry.get("d"))


_DERIVED = {"d": 1}
"""The flag of every entry of the derived lane (open windows, closed windows, late markers)."""


class MetricsCore:
    """Folds metric samples into tumbling event-time windows (key: series and window start).

    Entries: open windows (the window's JSON plus ``"p"`` and ``"o"``), closed-window markers
    (the final rollup), late markers, and one partition record per partition. Rollups are
    published coalesced: a changed window is marked dirty and :meth:`flush` publishes each dirty
    window once; a window closed by stream time is published final.

    **Two lanes per partition.** The series the worker derives from lifecycle events
    (:func:`processor.derived.in_derived_lane`: a property of the series, not of a sample's
    ``source``, so a window is in one lane, and the sink can tell a sample's lane from the
    sample alone; an engine's own samples of those types with other labels stay raw) are
    written back to the metrics topic only when the lifecycle side has processed
    their events: after an outage or in a backlog they come after the raw samples engines sent
    meanwhile, however long the outage was. Judged by the raw samples' stream time, they would
    be late. So each lane has its own stream time (the largest event time applied in that lane
    of the partition, in offset order; entries of the derived lane carry ``"d"``, and each
    lane's stream time is recovered from its own entries' ``t``, so the invariant of the module
    docstring holds per lane) and closes its own windows; raw samples are judged as before.

    Derived samples still arrive out of order in their lane: several lifecycle partitions feed
    one metrics partition, each at its own pace. A new execution's event is accepted up to the
    execution horizon behind its lifecycle partition's stream time, so a derived sample is
    about the horizon plus the skew between lifecycle partitions behind its lane at most (an
    event of an execution still in the table is accepted however old it is: an engine that
    sends a step's end hours late can still exceed it). A closed window of the
    derived lane therefore keeps its whole state (with its samples' id hashes) for
    ``derived_keep_ms`` after it closed: a derived sample for it is folded in (once: the ids
    dedupe re-derivations) and the final rollup is published again (the compacted rollups
    topic and the sink keep the newest). A derived sample refused even so (its lane's stream
    time has passed its window's end + grace + ``derived_keep_ms``) is dead-lettered as
    ``late_derived`` and counted (see :func:`admission_limit`). Alert rules see a
    derived window when it first closes, not its reopenings.
    """

    def __init__(
        self, store: Store, config: FoldConfig = FoldConfig(), alerts: AlertCore | None = None, *, router: Router | None = None
    ) -> None:
        self.store = store = StagedStore(store)
        self.config = config
        self.router = router or Router(None)
        self.alerts = alerts
        """Evaluates alert rules on each window closed by stream time."""
        self.times = _StreamTimes(store, _in_lane(False))
        """The raw lane's stream times."""
        self.derived_times = _StreamTimes(store, _in_lane(True))
        """The derived lane's stream times."""
        self.dirty: set[str] = set()
        self.idle_published: set[str] = set()
        self.counters: dict[str, int] = {}
        self._repaired: set[int] = set()
        self.deadlines = _Deadlines(store, lambda entry: self._due(entry, derived=False))
        self.derived_deadlines = _Deadlines(store, lambda entry: self._due(entry, derived=True))
        self._idle: list[tuple[int, str]] | None = None
        """Open windows by the wall-clock time of their idle close, built lazily."""
        # The alert states a record moves are committed before its windows: a crash that keeps
        # a window's closing keeps the rules' verdict on it (evaluating a window again is a no-op).
        self.guard = Guard([*([] if alerts is None else [alerts.store]), store], self.forget, self.counters)

    def _due(self, entry: dict[str, Any], *, derived: bool) -> int | None:
        """When (in the stream time of its lane) a sweep has something to do with ``entry``;
        ``None`` for the entries of the other lane."""
        if bool(entry.get("d")) != derived:
            return None
        if "late" in entry:
            return int(entry["late"]) + self.config.marker_ms
        if "closed" in entry:
            return int(entry["closed"]) + (self.config.derived_keep_ms if derived else self.config.marker_ms)
        if "start" in entry:
            return int(entry["end"]) + self.config.grace_ms
        return None

    def _lane(self, derived: bool) -> tuple[_StreamTimes, _Deadlines]:
        return (self.derived_times, self.derived_deadlines) if derived else (self.times, self.deadlines)

    def _arm_idle(self, wkey: str, end: int) -> None:
        """(Re)arm the wall-clock close of an open window."""
        self.idle_published.discard(wkey)
        if self._idle is not None:
            heapq.heappush(self._idle, (end + self.config.grace_ms, wkey))

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _open_windows(self) -> list[tuple[str, dict[str, Any]]]:
        return [(k, v) for k, v in self.store.items() if "start" in v]

    def mark_all_dirty(self) -> None:
        """After a (re)start: publish every open window again, in case an update was lost."""
        self.dirty.update(k for k, _ in self._open_windows())

    def forget(self) -> None:
        """Drop what is cached from the store (after a restart or a rebalance)."""
        for times, deadlines in (self._lane(False), self._lane(True)):
            times.forget()
            deadlines.forget()
        self._repaired.clear()
        self._idle = None

    def _repair(self, p: int) -> list[Emit]:
        """A redelivery means a crash may have lost what was published after the last commit:
        once per partition, publish the final rollups of the windows closed recently again."""
        if p in self._repaired:
            return []
        self._repaired.add(p)
        return [
            json_emit(Stream.METRIC_ROLLUPS, entry["rk"], _final_rollup(entry))
            for _, entry in self.store.items()
            if entry.get("p") == p and "closed" in entry
        ] + ([] if self.alerts is None else self.alerts.repair(p))

    def process(self, sample: MetricRecorded, origin: Origin, raw: bytes, key: bytes | None) -> list[Emit]:
        """Fold one sample, all or nothing (:class:`~processor.guard.Guard`)."""
        return self.guard.run(lambda: self._process(sample, origin, raw, key), origin, key, raw)

    def _process(self, sample: MetricRecorded, origin: Origin, raw: bytes, key: bytes | None) -> list[Emit]:
        p, o = origin.partition, origin.offset
        if self.router.misrouted(sample, p):
            self._count("misrouted")
            return [self.router.forward(Stream.METRICS, sample, origin, raw, key)]
        again = _late_again(self.store, p, o)
        if again is not None:
            self._count("redelivered")
            return again
        meta = self.store.get(_meta_key(p))
        if meta is not None and o <= meta["o"]:
            self._count("redelivered")  # applied before a sweep that has closed its window
            return self._repair(p)
        size, grace = self.config.window_ms, self.config.grace_ms
        start = window_start(sample.occurred_at, size)
        series = series_of(sample)
        wkey = window_key(series, start)
        entry = self.store.get(wkey)
        if entry is not None and o <= entry["o"]:
            self._count("redelivered")
            self.dirty.add(wkey)
            return self._repair(p)
        derived, refused_from = admission_limit(self.config, sample)
        times, deadlines = self._lane(derived)
        stream_time = times.get(p)
        if refused_from <= stream_time:
            reason = "late_derived" if derived else "late"
            self._count(reason)
            lane = "derived" if derived else "raw"
            # The detail is a function of the record alone: two copies of one forwarded record
            # (forwarded again after a crash) may be judged at different stream times, and
            # their dead letters, which both name the original, must be the same row.
            detail = f"window [{start}, {start + size}) refused from {lane} stream time {refused_from}"
            deadlines.push(p, stream_time + self.config.marker_ms, _late_key(p, o))
            return _record_late(self.store, p, o, stream_time, dead_letter(reason, detail, origin, key, raw),
                                lane=_DERIVED if derived else None)
        if derived and (entry is not None and "closed" in entry or entry is None and start + size + grace <= stream_time):
            return self._fold_closed(wkey, entry, MetricWindow(series, start, start + size), sample, p, o)
        window = MetricWindow.from_json(entry) if entry is not None else MetricWindow(series, start, start + size)
        if window.has(sample.event_id):
            self._count("duplicate")
            return []
        window = window.add(sample)
        self.store[wkey] = {**window.to_json(), "p": p, "o": o, **(_DERIVED if derived else {})}
        self._count("applied")
        self.dirty.add(wkey)
        if entry is None:
            deadlines.push(p, window.end + grace, wkey)
            self._arm_idle(wkey, window.end)
        elif wkey in self.idle_published:
            self._arm_idle(wkey, window.end)
        before, after = times.advance(p, sample.occurred_at)
        if _crossed(before, after, self.config.sweep_interval_ms):
            return self.sweep(p, o, derived=derived)
        return []

    def _fold_closed(
        self, wkey: str, entry: dict[str, Any] | None, empty: MetricWindow, sample: MetricRecorded, p: int, o: int
    ) -> list[Emit]:
        """A derived sample for a window its lane has closed (its closed marker ``entry``, or
        none when the sample is the window's first): fold it into the window's state and
        publish the final rollup again. The sample is older than the lane's stream time, which
        therefore stays."""
        window = MetricWindow.from_json(entry["w"]) if entry is not None else empty
        if window.has(sample.event_id):
            self._count("duplicate")
            return []
        closed = int(entry["closed"]) if entry is not None else self.derived_times.get(p)
        window = window.add(sample)
        rkey = rollup_key(window.series, window.start)
        self.store[wkey] = {"p": p, "o": o, "t": window.max_event_time, "closed": closed, "rk": rkey.decode(),
                            "w": window.to_json(), **_DERIVED}
        if entry is None:
            self.derived_deadlines.push(p, closed + self.config.derived_keep_ms, wkey)
        self._count("applied")
        self._count("reopened")
        return [json_emit(Stream.METRIC_ROLLUPS, rkey, window.rollup(final=True))]

    def sweep(self, p: int, o: int, *, derived: bool = False) -> list[Emit]:
        """Publish as final the windows of one lane of ``p`` that its stream time has closed,
        and leave a closed marker until ``marker_ms`` later (the final rollup, for repairs), or
        in the derived lane ``derived_keep_ms`` later (the whole window, to be reopened); drop
        old markers.

        First a partition record notes this offset: every record at or below it was processed
        before the sweep. Table writes persist as a prefix, so whenever a closing persisted,
        that record did too, and a redelivered sample of a closed window is recognised."""
        times, deadlines = self._lane(derived)
        stream_time = times.get(p)
        due = deadlines.due(p, stream_time)
        if not due:
            return []
        self.store[_meta_key(p)] = {"p": p, "o": o, "t": 0}
        keep = self.config.derived_keep_ms if derived else self.config.marker_ms
        emits = []
        for wkey, entry in due:
            if "late" in entry or "closed" in entry:
                del self.store[wkey]
                continue
            window = self._readable(wkey, entry)
            if window is None:
                del self.store[wkey]
                continue
            rkey = rollup_key(window.series, window.start)
            rollup = window.rollup(final=True)
            emits.append(json_emit(Stream.METRIC_ROLLUPS, rkey, rollup))
            marker = {"p": p, "o": entry["o"], "t": entry["t"], "closed": stream_time, "rk": rkey.decode()}
            self.store[wkey] = {**marker, "w": window.to_json(), **_DERIVED} if derived else {**marker, "rollup": rollup}
            deadlines.push(p, stream_time + keep, wkey)
            self.dirty.discard(wkey)
            self.idle_published.discard(wkey)
            self._count("closed")
            if self.alerts is not None:
                emits += self.alerts.window_closed(window, p)
        return emits

    def _readable(self, wkey: str, entry: dict[str, Any]) -> MetricWindow | None:
        """The window of an entry, or ``None`` (counted, logged) for one no fold can read: the
        timers and sweeps go on past it, and a sweep drops it."""
        try:
            return MetricWindow.from_json(entry)
        except (KeyError, TypeError, ValueError) as exc:
            self._count("unreadable_window")
            log.error("an unreadable window %s: %r", wkey[:200], exc)
            return None

    def flush(self) -> list[Emit]:
        """Publish every window changed since the last flush (not final)."""
        emits = []
        for wkey in sorted(self.dirty):
            entry = self.store.get(wkey)
            window = None if entry is None or "start" not in entry else self._readable(wkey, entry)
            if window is None:
                continue
            emits.append(json_emit(Stream.METRIC_ROLLUPS, rollup_key(window.series, window.start), window.rollup(final=False)))
            if wkey in self.idle_published:  # its newest record is not final any more
                self._arm_idle(wkey, window.end)
        self.dirty.clear()
        return emits

    def close_idle(self, now_ms: int) -> list[Emit]:
        """Wall-clock close: publish as final the windows whose end + grace has passed on the
        wall clock although stream time has not reached it (an idle series or partition).
        Only publishing depends on the wall clock: the window stays in the table, and a sample
        that is not late by stream time still counts (and publishes it again)."""
        if self._idle is None:
            self._idle = [(v["end"] + self.config.grace_ms, k) for k, v in self._open_windows() if k not in self.idle_published]
            heapq.heapify(self._idle)
        emits = []
        while self._idle and self._idle[0][0] <= now_ms:
            _, wkey = heapq.heappop(self._idle)
            entry = self.store.get(wkey)
            if entry is None or "start" not in entry or wkey in self.idle_published:
                continue
            if entry["end"] + self.config.grace_ms > now_ms or (window := self._readable(wkey, entry)) is None:
                continue
            emits.append(json_emit(Stream.METRIC_ROLLUPS, rollup_key(window.series, window.start), window.rollup(final=True)))
            self.idle_published.add(wkey)
            self.dirty.discard(wkey)
        return emits

    def finish(self, now_ms: int) -> list[Emit]:
        """End of input (replay): every open window as the live worker would last have published
        it: final if its end + grace has passed on the wall clock (the idle close), else not."""
        emits = []
        for wkey, entry in self._open_windows():
            if (window := self._readable(wkey, entry)) is None:
                continue
            final = window.end + self.config.grace_ms <= now_ms
            emits.append(json_emit(Stream.METRIC_ROLLUPS, rollup_key(window.series, window.start), window.rollup(final=final)))
        self.dirty.clear()
        return emits



def _final_rollup(entry: dict[str, Any]) -> dict[str, Any]:
    """The final rollup of a closed marker (a derived one keeps the whole window)."""
    return entry["rollup"] if "rollup" in entry else MetricWindow.from_json(entry["w"]).rollup(final=True)
