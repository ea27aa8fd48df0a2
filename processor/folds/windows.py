"""Tumbling event-time windows of one metric series. Pure.

A sample belongs to the window ``[floor(t / size) * size, + size)`` of its ``occurred_at``.
A window is closed once its partition's stream time (the largest event time seen so far in
that partition, in offset order) reaches ``end + grace``; a sample for a closed window is
late. Each window remembers compact hashes of its samples' event ids while it is open, so a
sample a client resent (same event id, new offset) is counted once; the older of them are sealed
into segments stored beside the window's entry and written once (:data:`SEGMENT_IDS`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import orjson

from processor.folds.aggregate import Aggregate
from schemas.events import MetricRecorded

Series = tuple[str, str, tuple[tuple[str, str], ...]]
"""``(tenant_id or "", metric_type, sorted labels)``"""


def series_of(sample: MetricRecorded) -> Series:
    return sample_series(sample)[0]


def sample_series(sample: MetricRecorded) -> tuple[Series, str]:
    """The series of ``sample`` and its :func:`series_id`. Worked out once per sample object:
    the router, the metrics core, the raw-sample gate and the sink's row each ask for the same
    sample's, one after another (a sample is frozen, and the last one is held, so the object
    asked about cannot be another one at the same address)."""
    last = _LAST_SAMPLE[0]  # one read of the tuple: safe beside another thread's update
    if last[0] is sample:
        return last[1], last[2]
    series = (sample.tenant_id or "", sample.metric_type, tuple(sorted(sample.labels.items())))
    sid = series_id(series)
    _LAST_SAMPLE[0] = (sample, series, sid)
    return series, sid


_LAST_SAMPLE: list[tuple[Any, Series, str]] = [(None, ("", "", ()), "")]


@lru_cache(maxsize=1 << 14)
def series_id(series: Series) -> str:
    """The series as canonical JSON text, identical to the metrics topic's message key."""
    tenant, metric_type, labels = series
    return orjson.dumps([tenant, metric_type, [list(kv) for kv in labels]]).decode()


def window_start(at: int, size_ms: int) -> int:
    return at - at % size_ms


def id_hash(event_id: str) -> int:
    """63-bit hash of an event id (collision chance ~n^2/2^64 per window)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big") >> 1


SEGMENT_IDS = 64
"""Id hashes a window's tail holds before they are sealed into a segment: an entry of its own
(:func:`segment_key`), written once. An open window's entry then holds its tail, not all its
ids, so writing it (once per batch that changes it) costs what the tail does, not what the
window's size does; the ids of a window with n samples are written about twice in all."""


@dataclass(frozen=True, slots=True)
class MetricWindow:
    """A window's state. Its id hashes are ``tail`` (the newest, fewer than :data:`SEGMENT_IDS`)
    and the sealed ``segments`` (oldest first; entries of their own in the store, see
    :meth:`to_json` and :meth:`segment_json`).

    A window decoded from its entry alone (:meth:`from_json` without its segments) is *summary
    only*: its rollup, its entry and its sizes are right, but :meth:`has` and :meth:`add` refuse
    it (they would miss the sealed ids)."""

    series: Series
    start: int
    end: int
    aggregate: Aggregate = Aggregate()
    unit: str = ""
    tail: frozenset[int] = frozenset()
    max_event_time: int = 0
    segments: tuple[frozenset[int], ...] = ()
    """The sealed segments, loaded (``len(segments) == segment_count``) or not (empty)."""
    segment_count: int = 0
    sealed: frozenset[int] = field(default=frozenset(), compare=False, repr=False)
    """The union of the loaded ``segments`` (so that :meth:`has` is one look-up more)."""
    written: int = field(default=0, compare=False, repr=False)
    """How many of the segments the store holds already (written or decoded)."""

    @property
    def key(self) -> str:
        return window_key(self.series, self.start)

    @property
    def loaded(self) -> bool:
        return len(self.segments) == self.segment_count

    @property
    def ids(self) -> frozenset[int]:
        """Every id hash counted (of a loaded window)."""
        self._require_loaded()
        return self.sealed | self.tail

    @property
    def unwritten(self) -> tuple[frozenset[int], ...]:
        """The sealed segments the store does not hold yet."""
        return self.segments[self.written:]

    def _require_loaded(self) -> None:
        if not self.loaded:
            raise RuntimeError(f"window {self.key[:200]} was decoded without its {self.segment_count} segments")

    def has(self, event_id: str) -> bool:
        self._require_loaded()
        h = id_hash(event_id)
        return h in self.tail or h in self.sealed

    def add(self, sample: MetricRecorded) -> MetricWindow:
        """The window with ``sample`` counted (callers check :meth:`has` first); a tail that
        reaches :data:`SEGMENT_IDS` is sealed into a new segment."""
        self._require_loaded()
        tail = self.tail | {id_hash(sample.event_id)}
        segments, sealed = self.segments, self.sealed
        if len(tail) >= SEGMENT_IDS:
            segments, sealed, tail = (*segments, tail), sealed | tail, frozenset()
        return MetricWindow(
            self.series,
            self.start,
            self.end,
            self.aggregate.add(float(sample.value)),
            sample.unit or self.unit,
            tail,
            max(self.max_event_time, sample.occurred_at),
            segments,
            len(segments),
            sealed,
            self.written,
        )

    def stored(self) -> MetricWindow:
        """The window once its entry and segments are written."""
        return replace(self, written=self.segment_count)

    def closed_at(self, grace_ms: int) -> int:
        """The stream time from which the window is closed."""
        return self.end + grace_ms

    def rollup(self, *, final: bool) -> dict[str, Any]:
        """The record published to ``axmon.metric-rollups`` and stored in ``metric_rollups``."""
        tenant, metric_type, labels = self.series
        return {
            "series": series_id(self.series),
            "tenant_id": tenant or None,
            "metric_type": metric_type,
            "labels": dict(labels),
            "unit": self.unit,
            "window_start": self.start,
            "window_end": self.end,
            **self.aggregate.summary(),
            "sketch": self.aggregate.sketch.to_json(),
            "final": final,
        }

    def to_json(self) -> dict[str, Any]:
        """The window's entry: everything but its sealed segments' ids (``segs``: how many)."""
        tenant, metric_type, labels = self.series
        out = {
            "series": [tenant, metric_type, [list(kv) for kv in labels]],
            "start": self.start,
            "end": self.end,
            "agg": self.aggregate.to_json(),
            "unit": self.unit,
            "ids": sorted(self.tail),
            "t": self.max_event_time,
        }
        if self.segment_count:
            out["segs"] = self.segment_count
        return out

    @staticmethod
    def segment_json(ids: frozenset[int]) -> dict[str, Any]:
        """A sealed segment's entry (at :func:`segment_key`)."""
        return {"ids": sorted(ids)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], segments: Iterable[Mapping[str, Any]] | None = None) -> MetricWindow:
        """The window of an entry and its segments' entries (in order); without ``segments``, of
        an entry that has some, a summary-only window (see the class docstring)."""
        tenant, metric_type, labels = data["series"]
        count = int(data.get("segs", 0))
        loaded = () if segments is None else tuple(frozenset(s["ids"]) for s in segments)
        if segments is not None and len(loaded) != count:
            raise ValueError(f"a window of {count} segments given {len(loaded)}")
        return cls(
            (tenant, metric_type, tuple((str(k), str(v)) for k, v in labels)),
            int(data["start"]),
            int(data["end"]),
            Aggregate.from_json(data["agg"]),
            str(data.get("unit", "")),
            frozenset(data.get("ids", ())),
            int(data.get("t", 0)),
            loaded,
            count,
            frozenset().union(*loaded),
            count,
        )


def segment_key(wkey: str, index: int) -> str:
    """The key of a window's sealed segment ``index`` (beside the window's own key)."""
    return f"{wkey}#{index}"


def window_key(series: Series, start: int) -> str:
    return f"{series_id(series)}@{start}"


def rollup_key(series: Series, start: int) -> bytes:
    """Message key on ``axmon.metric-rollups``: series and window start."""
    return window_key(series, start).encode()
