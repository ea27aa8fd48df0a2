"""Window aggregates: merging equals aggregating together; the sketch's relative error bound."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.folds.aggregate import Aggregate
from processor.folds.sketch import QuantileSketch

values = st.lists(
    st.one_of(
        st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False),
        st.integers(-1000, 100_000).map(float),
    ),
    max_size=200,
)


def nearest_rank(sorted_values: list[float], q: float) -> float:
    """The original design's percentile: the value at index ceil(n q) - 1."""
    return sorted_values[max(0, math.ceil(len(sorted_values) * q) - 1)]


@settings(max_examples=300)
@given(values, values)
def test_merging_aggregates_equals_aggregating_the_union(a: list[float], b: list[float]) -> None:
    merged = Aggregate.of(a).merge(Aggregate.of(b))
    together = Aggregate.of(a + b)
    assert (merged.count, merged.min, merged.max, merged.sketch) == (together.count, together.min, together.max, together.sketch)
    assert merged.sum == pytest.approx(together.sum, rel=1e-9, abs=1e-6)
    for q in (0.5, 0.95, 0.99):
        assert merged.quantile(q) == together.quantile(q)


@settings(max_examples=300)
@given(values.filter(bool), st.sampled_from([0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0]))
def test_quantiles_are_within_one_percent_of_the_nearest_rank(samples: list[float], q: float) -> None:
    agg = Aggregate.of(samples)
    exact = nearest_rank(sorted(samples), q)
    estimate = agg.quantile(q)
    assert estimate is not None
    assert abs(estimate - exact) <= 0.01 * abs(exact) + 1e-9


@given(values)
def test_adding_one_by_one_equals_building_at_once(samples: list[float]) -> None:
    agg = Aggregate()
    for v in samples:
        agg = agg.add(v)
    built = Aggregate.of(samples)
    assert (agg.count, agg.min, agg.max, agg.sketch) == (built.count, built.min, built.max, built.sketch)
    assert agg.sum == built.sum  # same order of additions: bit for bit


@given(values)
def test_sketch_survives_serialisation(samples: list[float]) -> None:
    agg = Aggregate.of(samples)
    assert Aggregate.from_json(agg.to_json()) == agg


def test_summary_of_the_original_example() -> None:
    agg = Aggregate.of([500, 1500, 2000, 2500, 15000])
    s = agg.summary()
    assert (s["count"], s["sum"], s["min"], s["max"], s["avg"]) == (5, 21500, 500, 15000, 4300)
    assert s["p50"] == pytest.approx(2000, rel=0.01)
    assert s["p99"] == 15000  # clamped to the exact max


def test_empty_and_invalid() -> None:
    assert Aggregate().summary()["p50"] is None
    with pytest.raises(ValueError):
        QuantileSketch().quantile(1.5)
    with pytest.raises(ValueError):
        QuantileSketch(alpha=0.01).merge(QuantileSketch(alpha=0.02))
