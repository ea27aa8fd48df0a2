"""Mergeable aggregates of metric samples: count, sum, min, max and a quantile sketch.

``Aggregate.of(samples)`` and ``a.merge(b)`` agree: merging the aggregates of two sample sets
gives the aggregate of their union (exactly for count, min, max and the sketch; ``sum`` up to
floating-point rounding). Pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processor.folds.sketch import QuantileSketch

QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


@dataclass(frozen=True, slots=True)
class Aggregate:
    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None
    sketch: QuantileSketch = field(default_factory=QuantileSketch)

    @classmethod
    def of(cls, values: Iterable[float]) -> Aggregate:
        items = list(values)
        if not items:
            return cls()
        total = 0.0
        for v in items:
            total += v
        return cls(len(items), total, min(items), max(items), QuantileSketch().add_all(items))

    def add(self, value: float) -> Aggregate:
        return Aggregate(
            self.count + 1,
            self.sum + value,
            _either(min, self.min, value),
            _either(max, self.max, value),
            self.sketch.add(value),
        )

    def merge(self, other: Aggregate) -> Aggregate:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        return Aggregate(
            self.count + other.count,
            self.sum + other.sum,
            _either(min, self.min, other.min),
            _either(max, self.max, other.max),
            self.sketch.merge(other.sketch),
        )

    @property
    def avg(self) -> float | None:
        return self.sum / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The nearest-rank quantile: exact at the extremes (the min and max are kept), from
        the sketch in between (relative error <= its alpha), clamped into [min, max]."""
        estimate = self.sketch.quantile(q)
        if estimate is None or self.min is None or self.max is None:
            return None
        rank = max(0, math.ceil(self.count * q) - 1)
        if rank == 0:
            return self.min
        if rank == self.count - 1:
            return self.max
        return min(max(estimate, self.min), self.max)

    def summary(self) -> dict[str, Any]:
        """count, sum, avg, min, max, p50, p95, p99: the original MetricAggregation fields."""
        out: dict[str, Any] = {
            "count": self.count,
            "sum": self.sum,
            "avg": self.avg,
            "min": self.min,
            "max": self.max,
        }
        for name, q in QUANTILES:
            out[name] = self.quantile(q)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "sketch": self.sketch.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Aggregate:
        return cls(
            int(data["count"]),
            float(data["sum"]),
            data.get("min"),
            data.get("max"),
            QuantileSketch.from_json(data.get("sketch") or {}),
        )


def _either(pick: Any, a: float | None, b: float | None) -> float | None:
    """``pick(a, b)`` where both are known, else whichever is."""
    if a is None:
        return b
    if b is None:
        return a
    return pick(a, b)  # type: ignore[no-any-return]
