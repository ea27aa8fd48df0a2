"""Tumbling event-time windows of one metric series. Pure.

A sample belongs to the window ``[floor(t / size) * size, + size)`` of its ``occurred_at``.
A window is closed once its partition's stream time (the largest event time seen so far in
that partition, in offset order) reaches ``end + grace``; a sample for a closed window is
late. Each window remembers compact hashes of its samples' event ids while it is open, so a
sample a client resent (same event id, new offset) is counted once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from processor.folds.aggregate import Aggregate
from schemas.events import MetricRecorded

Series = tuple[str, str, tuple[tuple[str, str], ...]]
"""``(tenant_id or "", metric_type, sorted labels)``"""


def series_of(sample: MetricRecorded) -> Series:
    return (sample.tenant_id or "", sample.metric_type, tuple(sorted(sample.labels.items())))


def series_id(series: Series) -> str:
    """The series as canonical JSON text, identical to the metrics topic's message key."""
    tenant, metric_type, labels = series
    return orjson.dumps([tenant, metric_type, [list(kv) for kv in labels]]).decode()


def window_start(at: int, size_ms: int) -> int:
    return at - at % size_ms


def id_hash(event_id: str) -> int:
    """63-bit hash of an event id (collision chance ~n^2/2^64 per window)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big") >> 1


@dataclass(frozen=True, slots=True)
class MetricWindow:
    series: Series
    start: int
    end: int
    aggregate: Aggregate = Aggregate()
    unit: str = ""
    ids: frozenset[int] = frozenset()
    max_event_time: int = 0
    order: tuple[int, ...] = field(default=(), compare=False, repr=False)
    """A cache of :meth:`sorted_ids`: ``ids`` sorted as last encoded or decoded..."""
    added: tuple[int, ...] = field(default=(), compare=False, repr=False)
    """...and the ids added since, in the order added (both empty: unknown)."""

    @property
    def key(self) -> str:
        return window_key(self.series, self.start)

    def has(self, event_id: str) -> bool:
        return id_hash(event_id) in self.ids

    def add(self, sample: MetricRecorded) -> MetricWindow:
        """The window with ``sample`` counted (callers check :meth:`has` first)."""
        return MetricWindow(
            self.series,
            self.start,
            self.end,
            self.aggregate.add(float(sample.value)),
            sample.unit or self.unit,
            self.ids | {h := id_hash(sample.event_id)},
            max(self.max_event_time, sample.occurred_at),
            self.order,
            (*self.added, h),
        )

    def sorted_ids(self) -> list[int]:
        """``ids`` in ascending order (what an entry stores), from the cache when it holds them
        all: sorting a sorted run with a few ids after it costs about a copy."""
        if len(self.order) + len(self.added) != len(self.ids):
            return sorted(self.ids)
        return sorted(self.order + self.added) if self.added else list(self.order)

    def rebased(self, order: list[int]) -> MetricWindow:
        """The window with ``order`` (its :meth:`sorted_ids`) as the cache."""
        return replace(self, order=tuple(order), added=())

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
        tenant, metric_type, labels = self.series
        return {
            "series": [tenant, metric_type, [list(kv) for kv in labels]],
            "start": self.start,
            "end": self.end,
            "agg": self.aggregate.to_json(),
            "unit": self.unit,
            "ids": self.sorted_ids(),
            "t": self.max_event_time,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricWindow:
        tenant, metric_type, labels = data["series"]
        return cls(
            (tenant, metric_type, tuple((str(k), str(v)) for k, v in labels)),
            int(data["start"]),
            int(data["end"]),
            Aggregate.from_json(data["agg"]),
            str(data.get("unit", "")),
            frozenset(ids := data.get("ids", ())),
            int(data.get("t", 0)),
            tuple(ids),  # stored sorted (to_json)
        )


def window_key(series: Series, start: int) -> str:
    return f"{series_id(series)}@{start}"


def rollup_key(series: Series, start: int) -> bytes:
    """Message key on ``axmon.metric-rollups``: series and window start."""
    return window_key(series, start).encode()
