"""The lifecycle core, and what all processing cores share: per-partition logic around the pure folds, shared by the Faust worker
and by replay. A core keeps its state in a :class:`~processor.folds.records.Store` and returns the
records to publish; it never does I/O itself.

Decisions that shape state (lateness, eviction, window closing) are judged by each partition's
stream time: the largest event time applied so far in that partition, in offset order. A replay
reads each partition in the same order and so decides the same. Stream time is not stored on
its own: every applied event raises the ``t`` of the entry it lands in, and the entry holding
the maximum is never removed before stream time moves on, so after a restart the largest ``t``
among a partition's entries is its stream time again. (The metrics core keeps two stream times
per partition, one per lane, each recovered from its own lane's entries: see
:class:`MetricsCore`.)

Every key is folded in one partition only, its home (:mod:`processor.folds.routing`): a record on
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
from collections.abc import Callable
from typing import Any

import orjson

from processor.folds.alerting import stale_alert
from processor.folds.config import FoldConfig
from processor.folds.derived import derived_origins, derived_samples
from processor.folds.execution import (
    ExecutionState,
    apply,
    snapshot,
    state_from_json,
    state_to_json,
)
from processor.folds.guard import Guard, StagedStore
from processor.folds.records import Emit, Origin, Store, Stream, dead_letter, json_emit
from processor.folds.routing import Router, copies_applied, copy_seen
from processor.folds.stats import Contribution
from processor.folds.stream_time import (
    Deadlines,
    StreamTimes,
    crossed,
    late_again,
    late_key,
    record_late,
)
from schemas.codec import encode_event
from schemas.events import LifecycleEvent
from schemas.topics import series_key


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
        defer_states: bool = False,
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
        self.times = StreamTimes(store)
        self.deadlines = Deadlines(store, self._due)
        self.counters: dict[str, int] = {}
        self._eviction_index: dict[int, dict[int, list[tuple[str, dict[str, Any]]]]] = {}
        self._states: dict[str, tuple[Any, ExecutionState]] = {}
        """eid -> (the fold state as stored last, the state it encodes)."""
        self.guard = Guard([store], self.forget, self.counters)
        self.defer_states = defer_states
        """Batches (the worker): an execution's state record is made once per batch, by
        :meth:`take_states` at its end, not at each of its events (a compacted topic keeps only
        the last one anyway); its eviction's tombstone still comes after it."""
        self._dirty: dict[str, None] = {}
        """Executions whose state changed since :meth:`take_states` (``defer_states``), in order."""
        self._made_at: dict[str, int] = {}
        """Of those, the ones whose record was made at once (large), by the offset of that state."""

    def _state_of(self, eid: str, stored: Any) -> ExecutionState:
        """:func:`state_from_json` of a stored fold state, without decoding it again when it is
        the very object this core made last for ``eid`` (stored values are never mutated)."""
        known = self._states.get(eid)
        if known is not None and known[0] is stored:
            return known[1]
        return state_from_json(stored)

    def _state_json(self, eid: str, state: ExecutionState) -> Any:
        stored = state_to_json(state)
        if state.terminal:  # rarely folded again (a late or resent event); a replay spills it
            self._states.pop(eid, None)
            return stored
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
        """Fold one event, all or nothing (:class:`~processor.folds.guard.Guard`)."""
        return self.guard.run(lambda: self._process(event, origin, raw, key), origin, key, raw)

    def _process(self, event: LifecycleEvent, origin: Origin, raw: bytes, key: bytes | None) -> list[Emit]:
        p, o = origin.partition, origin.offset
        if self.router.misrouted(event, p):
            self._count("misrouted")
            return [self.router.forward(Stream.WORKFLOW_EVENTS, event, origin, raw, key)]
        again = late_again(self.store, p, o)
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
            # The detail is a function of the record alone (as in the metrics core): two copies
            # of one forwarded record may be judged at different stream times, and their dead
            # letters, which both name the original, must be the same row live and in replay.
            detail = (f"event time {event.occurred_at} is {retention} ms or more behind its partition's "
                      f"stream time, and the worker holds no state of execution {eid}")
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
        if crossed(before, after, self.config.sweep_interval_ms):
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
        if self.defer_states and self._entry_size(state.execution_id, entry) <= _DEFERRABLE_BYTES:
            self._dirty[state.execution_id] = None
            emits: list[Emit] = []
            status, duration = _status_and_duration(state)
        else:  # a large state's record is made now, where the guard checks that it fits a Kafka record
            if self.defer_states:
                self._dirty[state.execution_id] = None
                self._made_at[state.execution_id] = o
            view = snapshot(state)
            emits = [self._state_emit(entry, view)]
            status, duration = view["status"], view["duration"]
        if not self.derive:
            return emits
        contribution = Contribution(status, duration)
        if "re" in entry:  # rehydrated: see _contribution_op
            emits.append(_contribution_op(state.execution_id, state.tenant_id, entry["re"], contribution, p, o))
        elif everything or previous is None or _status_and_duration(previous) != (contribution.status, contribution.duration):
            emits.append(_stats_set(state.execution_id, state.tenant_id, contribution, p, o, seq=0))
        known = set() if everything or previous is None else derived_origins(previous)
        return emits + _derived_emits(state, known)

    def _entry_size(self, eid: str, entry: dict[str, Any]) -> int:
        """The JSON size of ``entry`` (as written by this fold, else encoded now: a redelivery)."""
        size = self.store.encoded_size(eid)
        return len(orjson.dumps(entry)) if size is None else size

    def take_states(self) -> list[Emit]:
        """The state records of the executions changed since the last call (``defer_states``),
        from their entries as they are now: an event whose fold failed (its writes dropped)
        leaves its execution's state as it was, published again. Executions evicted since made
        their record before their tombstone (:meth:`sweep`)."""
        emits = []
        for eid in self._dirty:
            entry = self.store.get(eid)
            if entry is None or "s" not in entry or "evicted" in entry or self._made_at.get(eid) == entry["o"]:
                continue  # gone, evicted (its record came before its tombstone), or made already
            emits.append(self._state_emit(entry, snapshot(self._state_of(eid, entry["s"]))))
        self._dirty.clear()
        self._made_at.clear()
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
            if self.derive and "s" in entry:
                # The crash may have lost this offset's derived samples after the eviction
                # persisted: send them all again (the metrics fold counts each id once, and the
                # derived lane keeps the windows of an evicted execution whole long enough).
                emits += _derived_emits(state_from_json(entry["s"]), set())
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
        self.deadlines.push(p, stream_time + self.config.marker_ms, late_key(p, o))
        return record_late(self.store, p, o, stream_time, emit)

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
                view = snapshot(self._state_of(eid, entry["s"]))
                if eid in self._dirty:  # its last state, before the tombstone
                    emits.append(self._state_emit(entry, view))
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


_DEFERRABLE_BYTES = 256 * 1024
"""An execution whose table entry is larger than this makes its state record at once, where the
guard checks its size (the record, the entry's fields without their register stamps, is smaller
than the entry; a quarter of Kafka's record limit leaves room for any doubt)."""
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


def _derived_emits(state: ExecutionState, known: set[str]) -> list[Emit]:
    """The derived samples of ``state`` (but those of the origins in ``known``), as records."""
    return [Emit(Stream.METRICS, series_key(sample.tenant_id, sample.metric_type, sample.labels), encode_event(sample))
            for sample in derived_samples(state, skip=known)]


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
