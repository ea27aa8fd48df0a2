"""Open metric windows written once per batch instead of once per sample. Pure (no Faust).

An open window's entry holds its aggregate and the id hashes of its newest samples (its tail;
the older ones are sealed into segments written once), so building and encoding it for each
sample would cost a write per sample. :class:`DeferredWindows` keeps the
windows a batch changed as values and writes each once, when the batch ends (or earlier, see
below), through :class:`DeferredWrites` (the worker's write-back).

**Crash consistency.** Written at the end, a window's write comes after the writes of later
records: the partition's writes are no longer in record order, so a prefix of them (what a
crash keeps) is no state after a prefix of the records. The write-back frames such a
partition's batch whole (:meth:`DeferredWrites.begin_reordered`), and the metrics core keeps
that frame within a record's limit: before a write it must make at once (a sweep, a late
marker, a closed or a large window) it writes the deferred windows and flushes, and it does
the same between records once the deferred windows may take :data:`FLUSH_BYTES`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from processor.folds.windows import MetricWindow
from schemas.limits import MAX_RECORD_BYTES

FLUSH_BYTES = 256 * 1024
"""The deferred windows and the writes waiting are flushed before they may take more than this
(the bound of :func:`entry_bound`), so a frame stays well below a record's limit."""


class DeferredWrites(Protocol):
    """Where deferred windows are written: the worker's write-back."""

    pending_bytes: int
    """The bytes of the writes that wait for the next flush."""

    def begin(self, partition: int) -> None:
        """The writes that follow are ``partition``'s (those of the record being folded)."""

    def begin_reordered(self, partition: int) -> None:
        """The writes that follow are ``partition``'s, made after later records' writes."""

    def flush(self) -> int:
        """Write what waits (between two records' writes)."""


Deferred = tuple[MetricWindow, int, int, bool]
"""(the open window, its partition, the offset of its last sample, whether of the derived lane)."""


def entry_bound(window: MetricWindow, key_bytes: int) -> int:
    """An upper bound of what writing the window takes as JSON, its entry and the segments it
    sealed since it was last written: an id hash takes at most 20 bytes with its comma, a
    sketch bucket 2 x 24; the series is written (as JSON, no longer than its window key of
    ``key_bytes``) twice, in its key and its fields, and once more in each segment's key."""
    sketch = window.aggregate.sketch
    unwritten = window.unwritten
    ids = len(window.tail) + sum(len(s) for s in unwritten)
    return (4096 + 21 * ids + 48 * (len(sketch.positive) + len(sketch.negative)) + 2 * key_bytes
            + (64 + key_bytes) * len(unwritten))


def fits(bound: int) -> bool:
    """Whether a window of that bound may wait: larger ones are written, and their size checked,
    at once."""
    return bound <= MAX_RECORD_BYTES // 4


class DeferredWindows:
    """The windows changed by a batch and not written yet, by window key."""

    def __init__(self, writes: DeferredWrites) -> None:
        self.writes = writes
        self._waiting: dict[str, tuple[Deferred, int]] = {}
        """wkey -> (what to write, its :func:`entry_bound`)."""
        self.bytes = 0
        """The sum of the waiting windows' bounds."""
        self._undo: tuple[str, tuple[Deferred, int] | None] | None = None
        """The record being folded's change: its window key and what waited before it."""

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def begin_record(self) -> None:
        self._undo = None

    def get(self, wkey: str) -> Deferred | None:
        waiting = self._waiting.get(wkey)
        return None if waiting is None else waiting[0]

    def put(self, wkey: str, deferred: Deferred, bound: int) -> None:
        """The record being folded changed ``wkey`` to ``deferred`` (once per record)."""
        before = self._waiting.get(wkey)
        self._undo = (wkey, before)
        self._waiting[wkey] = (deferred, bound)
        self.bytes += bound - (0 if before is None else before[1])

    def withdraw(self) -> tuple[str, Deferred] | None:
        """Take back the change of the record being folded (to write it within the record, or
        because its fold failed): what waited before it waits again; returns the change."""
        undo, self._undo = self._undo, None
        if undo is None:
            return None
        wkey, before = undo
        own = self._waiting.pop(wkey, None)
        if own is not None:
            self.bytes -= own[1]
        if before is not None:
            self._waiting[wkey] = before
            self.bytes += before[1]
        return None if own is None else (wkey, own[0])

    def take(self) -> Iterator[tuple[str, Deferred]]:
        """Everything waiting, once each, emptied; the write-back told before each that it is
        written out of record order, to the window's partition."""
        waiting, self._waiting, self.bytes, self._undo = self._waiting, {}, 0, None
        begin = self.writes.begin_reordered
        for wkey, (deferred, _) in waiting.items():
            begin(deferred[1])
            yield wkey, deferred

    def over_limit(self) -> bool:
        """Whether the waiting windows and the writes waiting may reach :data:`FLUSH_BYTES`."""
        return self.bytes + self.writes.pending_bytes >= FLUSH_BYTES
