"""The metrics core: samples into tumbling event-time windows, their rollups and alerts."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from typing import Any

from processor.folds.alerting import AlertCore
from processor.folds.config import FoldConfig
from processor.folds.decoded import DecodedCache
from processor.folds.deferred_windows import DeferredWindows, DeferredWrites, entry_bound, fits
from processor.folds.derived import in_derived_lane
from processor.folds.guard import Guard, StagedStore
from processor.folds.records import Emit, Origin, Store, Stream, dead_letter, json_emit
from processor.folds.routing import Router
from processor.folds.stream_time import (
    Deadlines,
    StreamTimes,
    crossed,
    late_again,
    late_key,
    meta_key,
    record_late,
)
from processor.folds.windows import (
    MetricWindow,
    rollup_key,
    segment_key,
    series_of,
    window_key,
    window_start,
)
from schemas.events import MetricRecorded

log = logging.getLogger(__name__)




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
    (:func:`processor.folds.derived.in_derived_lane`: a property of the series, not of a sample's
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
        self, store: Store, config: FoldConfig = FoldConfig(), alerts: AlertCore | None = None, *, router: Router | None = None,
        defer_windows: DeferredWrites | None = None,
    ) -> None:
        self.store = store = StagedStore(store)
        self.deferred = None if defer_windows is None else DeferredWindows(defer_windows)
        """With it, an open window a sample changes is written once per batch
        (:meth:`take_windows`; see :mod:`processor.folds.deferred_windows`)."""
        self.config = config
        self.router = router or Router(None)
        self.alerts = alerts
        """Evaluates alert rules on each window closed by stream time."""
        self.times = StreamTimes(store, _in_lane(False))
        """The raw lane's stream times."""
        self.derived_times = StreamTimes(store, _in_lane(True))
        """The derived lane's stream times."""
        self.dirty: set[str] = set()
        self.idle_published: set[str] = set()
        self.counters: dict[str, int] = {}
        self._repaired: set[int] = set()
        self.deadlines = Deadlines(store, lambda entry: self._due(entry, derived=False))
        self.derived_deadlines = Deadlines(store, lambda entry: self._due(entry, derived=True))
        self._windows: DecodedCache[MetricWindow] = DecodedCache(_WINDOWS_KEPT)
        """wkey -> (the open window's entry as stored last, the window it encodes)."""
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

    def _lane(self, derived: bool) -> tuple[StreamTimes, Deadlines]:
        return (self.derived_times, self.derived_deadlines) if derived else (self.times, self.deadlines)

    def _arm_idle(self, wkey: str, end: int) -> None:
        """(Re)arm the wall-clock close of an open window."""
        self.idle_published.discard(wkey)
        if self._idle is not None:
            heapq.heappush(self._idle, (end + self.config.grace_ms, wkey))

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _open_windows(self) -> list[tuple[str, dict[str, Any]]]:
        self.take_windows()
        return [(k, v) for k, v in self.store.items() if "start" in v]

    def take_windows(self) -> None:
        """Write every deferred window to the store, each once (the end of a batch; before
        anything reads the windows from the store). Written outside of a record's staging:
        they are what folds already committed, each to its own partition."""
        if not self.deferred:
            return
        store = self.store
        staging, store.staging = store.staging, False
        try:
            for wkey, (window, p, o, derived) in self.deferred.take():
                self._write_window(wkey, window, p, o, derived)
        finally:
            store.staging = staging

    def _write_window(self, wkey: str, window: MetricWindow, p: int, o: int, derived: bool) -> None:
        self._write_segments(wkey, window)
        stored: dict[str, Any] = {**window.to_json(), "p": p, "o": o, **(_DERIVED if derived else {})}
        self.store[wkey] = stored
        self._windows.keep(wkey, stored, window.stored())

    def _write_segments(self, wkey: str, window: MetricWindow) -> None:
        """Write the window's segments sealed since it was last written, before its entry (which
        counts them): written in that order, a prefix of the writes that has the entry has them."""
        for i, ids in enumerate(window.unwritten, start=window.written):
            self.store[segment_key(wkey, i)] = MetricWindow.segment_json(ids)

    def _drop_segments(self, wkey: str, data: dict[str, Any]) -> None:
        """Delete the sealed segments of the window entry ``data`` (its ``segs``)."""
        count = data.get("segs", 0)
        for i in range(count if isinstance(count, int) else 0):
            if self.store.get(key := segment_key(wkey, i)) is not None:
                del self.store[key]

    def _load(self, wkey: str, data: dict[str, Any]) -> MetricWindow:
        """The whole window of the entry ``data`` (an open window, or a derived closed marker's
        ``w``), its sealed segments read from the store."""
        segments = []
        for i in range(int(data.get("segs", 0))):
            segment = self.store.get(segment_key(wkey, i))
            if segment is None:
                raise ValueError(f"segment {i} of window {wkey[:200]} is missing")
            segments.append(segment)
        return MetricWindow.from_json(data, segments)

    def _flush_deferred(self) -> None:
        """Write the deferred windows and flush them with what waits (between two records'
        writes, or before the record being folded writes at once)."""
        assert self.deferred is not None
        self.take_windows()
        self.deferred.writes.flush()

    def _write_at_once(self, p: int, *, own: bool = False) -> None:
        """The record being folded writes at once (not deferred): the deferred windows, as the
        records before it left them, are written and flushed first, so that its writes follow
        theirs (see :mod:`processor.folds.deferred_windows`); its own writes are framed, so a
        crash keeps all of them or none (a sweep's own window without the partition record that
        notes its offset would advance the stream time its redelivered predecessors are judged
        by). ``own``: its own deferred window is written too, after the flush and within its
        staging."""
        deferred = self.deferred
        if deferred is None:
            return
        mine = None
        if deferred:
            mine = deferred.withdraw() if own else None
            self._flush_deferred()
        deferred.writes.begin_reordered(p)  # framed: this record's writes persist all or none
        if mine is not None:
            wkey, (window, _, o, derived) = mine
            self._write_window(wkey, window, p, o, derived)

    def mark_all_dirty(self) -> None:
        """After a (re)start: publish every open window again, in case an update was lost."""
        self.dirty.update(k for k, _ in self._open_windows())

    def forget(self) -> None:
        """Drop what is cached from the store (after a restart or a rebalance, or a fold that
        failed: its deferred write is taken back, the others' are written)."""
        if self.deferred is not None:
            self.deferred.withdraw()
            self.take_windows()
        for times, deadlines in (self._lane(False), self._lane(True)):
            times.forget()
            deadlines.forget()
        self._repaired.clear()
        self._windows.clear()
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
        """Fold one sample, all or nothing (:class:`~processor.folds.guard.Guard`)."""
        deferred = self.deferred
        if deferred is not None:
            deferred.begin_record()
            if deferred and deferred.over_limit():  # between two records: keep a frame small
                self._flush_deferred()
                deferred.writes.begin(origin.partition)
        return self.guard.run(lambda: self._process(sample, origin, raw, key), origin, key, raw)

    def _process(self, sample: MetricRecorded, origin: Origin, raw: bytes, key: bytes | None) -> list[Emit]:
        p, o = origin.partition, origin.offset
        if self.router.misrouted(sample, p):
            self._count("misrouted")
            return [self.router.forward(Stream.METRICS, sample, origin, raw, key)]
        again = late_again(self.store, p, o)
        if again is not None:
            self._count("redelivered")
            return again
        meta = self.store.get(meta_key(p))
        if meta is not None and o <= meta["o"]:
            self._count("redelivered")  # applied before a sweep that has closed its window
            return self._repair(p)
        size, grace = self.config.window_ms, self.config.grace_ms
        start = window_start(sample.occurred_at, size)
        series = series_of(sample)
        wkey = window_key(series, start)
        deferred = None if self.deferred is None else self.deferred.get(wkey)
        entry = self.store.get(wkey) if deferred is None else {"o": deferred[2]}
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
            deadlines.push(p, stream_time + self.config.marker_ms, late_key(p, o))
            self._write_at_once(p)
            return record_late(self.store, p, o, stream_time, dead_letter(reason, detail, origin, key, raw),
                                lane=_DERIVED if derived else None)
        if derived and (entry is not None and "closed" in entry or entry is None and start + size + grace <= stream_time):
            self._write_at_once(p)
            return self._fold_closed(wkey, entry, MetricWindow(series, start, start + size), sample, p, o)
        if deferred is not None:
            window = deferred[0]
        else:
            window = self._window_of(wkey, entry) if entry is not None else MetricWindow(series, start, start + size)
        if window.has(sample.event_id):
            self._count("duplicate")
            return []
        window = window.add(sample)
        bound = 0 if self.deferred is None else entry_bound(window, len(wkey))
        if self.deferred is not None and fits(bound):
            self.deferred.put(wkey, (window, p, o, derived), bound)
        else:
            self._write_at_once(p)
            self._write_window(wkey, window, p, o, derived)
        self._count("applied")
        self.dirty.add(wkey)
        if entry is None:
            deadlines.push(p, window.end + grace, wkey)
            self._arm_idle(wkey, window.end)
        elif wkey in self.idle_published:
            self._arm_idle(wkey, window.end)
        before, after = times.advance(p, sample.occurred_at)
        if crossed(before, after, self.config.sweep_interval_ms):
            self._write_at_once(p, own=True)  # a sweep reads windows from the store, and writes
            return self.sweep(p, o, derived=derived)
        return []

    def _window_of(self, wkey: str, entry: dict[str, Any]) -> MetricWindow:
        """:meth:`MetricWindow.from_json` of an open window's entry, without decoding it again
        when it is the very object this core stored last for ``wkey`` (stored values are never
        mutated)."""
        known = self._windows.get(wkey, entry)
        return known if known is not None else self._load(wkey, entry)

    def _fold_closed(
        self, wkey: str, entry: dict[str, Any] | None, empty: MetricWindow, sample: MetricRecorded, p: int, o: int
    ) -> list[Emit]:
        """A derived sample for a window its lane has closed (its closed marker ``entry``, or
        none when the sample is the window's first): fold it into the window's state and
        publish the final rollup again. The sample is older than the lane's stream time, which
        therefore stays."""
        window = self._load(wkey, entry["w"]) if entry is not None else empty
        if window.has(sample.event_id):
            self._count("duplicate")
            return []
        closed = int(entry["closed"]) if entry is not None else self.derived_times.get(p)
        window = window.add(sample)
        rkey = rollup_key(window.series, window.start)
        self._write_segments(wkey, window)
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
        self.store[meta_key(p)] = {"p": p, "o": o, "t": 0}
        keep = self.config.derived_keep_ms if derived else self.config.marker_ms
        emits = []
        for wkey, entry in due:
            if "late" in entry or "closed" in entry:
                if isinstance(entry.get("w"), dict):
                    self._drop_segments(wkey, entry["w"])
                del self.store[wkey]
                continue
            window = self._readable(wkey, entry)
            if window is None:
                self._drop_segments(wkey, entry)
                del self.store[wkey]
                continue
            rkey = rollup_key(window.series, window.start)
            rollup = window.rollup(final=True)
            emits.append(json_emit(Stream.METRIC_ROLLUPS, rkey, rollup))
            marker = {"p": p, "o": entry["o"], "t": entry["t"], "closed": stream_time, "rk": rkey.decode()}
            if not derived:  # a derived window keeps its segments as long as its marker
                self._drop_segments(wkey, entry)
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
        """Publish every window changed since the last flush (not final). A window closed by the
        wall clock that no sample has changed since (:meth:`mark_all_dirty` after a rebalance
        or a roll-forward) is published final again: publishing it as not final would leave
        the topic's last record of a closed window not final until the next idle close."""
        self.take_windows()
        emits = []
        for wkey in sorted(self.dirty):
            entry = self.store.get(wkey)
            window = None if entry is None or "start" not in entry else self._readable(wkey, entry)
            if window is None:
                continue
            final = wkey in self.idle_published  # a sample since its idle close re-arms it (_arm_idle)
            emits.append(json_emit(Stream.METRIC_ROLLUPS, rollup_key(window.series, window.start), window.rollup(final=final)))
        self.dirty.clear()
        return emits

    def close_idle(self, now_ms: int) -> list[Emit]:
        """Wall-clock close: publish as final the windows whose end + grace has passed on the
        wall clock although stream time has not reached it (an idle series or partition).
        Only publishing depends on the wall clock: the window stays in the table, and a sample
        that is not late by stream time still counts (and publishes it again)."""
        self.take_windows()
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



_WINDOWS_KEPT = 4_096
"""At most this many open windows are kept decoded (then forgotten at once)."""


def _final_rollup(entry: dict[str, Any]) -> dict[str, Any]:
    """The final rollup of a closed marker (a derived one keeps the whole window)."""
    return entry["rollup"] if "rollup" in entry else MetricWindow.from_json(entry["w"]).rollup(final=True)
