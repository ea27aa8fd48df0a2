"""Per-partition stream time, the deadlines a sweep looks at, and late-record decisions kept for
redeliveries: what the cores share (see :mod:`processor.folds.lifecycle_core`)."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

import orjson

from processor.folds.records import Emit, Store, Stream, json_emit


def partition_stream_time(store: Store, partition: int, belongs: Callable[[dict[str, Any]], bool] | None = None) -> int:
    return max(
        (v["t"] for _, v in store.items() if v.get("p") == partition and (belongs is None or belongs(v))), default=0
    )


class StreamTimes:
    """Cached per-partition stream times, recomputed from the store when unknown (from the
    entries that ``belongs`` accepts, when given: one lane of a partition)."""

    def __init__(self, store: Store, belongs: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self._store = store
        self._belongs = belongs
        self._times: dict[int, int] = {}

    def get(self, partition: int) -> int:
        if partition not in self._times:
            self._times[partition] = partition_stream_time(self._store, partition, self._belongs)
        return self._times[partition]

    def advance(self, partition: int, at: int) -> tuple[int, int]:
        """Raise the partition's stream time to ``at``; returns (before, after)."""
        before = self.get(partition)
        after = max(before, at)
        self._times[partition] = after
        return before, after

    def forget(self) -> None:
        self._times.clear()


class Deadlines:
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


def crossed(before: int, after: int, interval: int) -> bool:
    return after // interval > before // interval


def meta_key(p: int) -> str:
    return f"\x00meta/{p}"


def late_key(p: int, o: int) -> str:
    return f"\x00late/{p}/{o}"


def record_late(store: Store, p: int, o: int, stream_time: int, emit: Emit, *, lane: dict[str, Any] | None = None) -> list[Emit]:
    """Dead-letter a late record, and remember the decision: whether a record is late depends
    on the stream time at its offset, which a redelivery after a crash cannot know, so the
    redelivery repeats the stored decision (see :func:`late_again`). ``lane``: fields that
    say which of the partition's lanes ``stream_time`` belongs to."""
    store[late_key(p, o)] = {"p": p, "o": o, "t": 0, "late": stream_time, "dl": orjson.loads(emit.value or b"{}"), **(lane or {})}
    return [emit]


def late_again(store: Store, p: int, o: int) -> list[Emit] | None:
    marker = store.get(late_key(p, o))
    if marker is None:
        return None
    dl = marker["dl"]
    return [json_emit(Stream.DEAD_LETTER, f"{dl['topic']}/{dl['partition']}/{dl['offset']}", dl)]
