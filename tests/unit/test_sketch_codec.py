"""The stored form of sketches (:mod:`processor.folds.sketch_codec`): bytes that decode to the
sketch encoded, merged in one pass to exactly the fold of ``QuantileSketch.merge``, and any other
bytes refused with a typed error."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.folds.sketch import QuantileSketch, merge_json
from processor.folds.sketch_codec import SketchDecodeError, decode, encode, encode_json, merge_encoded

KEYS = st.integers(min_value=-(1 << 31), max_value=(1 << 31) - 1)
COUNTS = st.integers(min_value=1, max_value=(1 << 64) - 1)
ALPHAS = st.sampled_from([0.01, 0.02])


def buckets(keys: st.SearchStrategy[int] = KEYS) -> st.SearchStrategy[dict[int, int]]:
    return st.dictionaries(keys, st.one_of(st.integers(1, 3), st.integers(1, 70_000), COUNTS), max_size=40)


def sketches(alpha: st.SearchStrategy[float] = ALPHAS) -> st.SearchStrategy[QuantileSketch]:
    near = st.integers(min_value=-300, max_value=300)  # dense runs, as a busy series makes them
    return st.builds(QuantileSketch, alpha, st.one_of(buckets(), buckets(near)), st.one_of(buckets(), buckets(near)),
                     st.integers(0, (1 << 64)))


@given(sketches())
@settings(max_examples=300)
def test_bytes_decode_to_the_sketch(sketch: QuantileSketch) -> None:
    blob = encode(sketch)
    assert decode(blob) == sketch
    assert encode_json(sketch.to_json()) == blob
    assert merge_encoded([blob]) == sketch


@given(st.lists(sketches(st.just(0.01)), max_size=12), st.lists(st.sampled_from([None, b""]), max_size=3))
@settings(max_examples=300)
def test_merging_bytes_is_folding_merge(parts: list[QuantileSketch], empties: list[bytes | None]) -> None:
    blobs: list[bytes | None] = [encode(s) for s in parts]
    blobs[1:1] = empties
    merged = merge_encoded(blobs)
    if not blobs:
        assert merged is None
        return
    expected = QuantileSketch()
    for s in parts:
        expected = expected.merge(s)
    assert merged == expected
    keys = [*expected.positive, *expected.negative, 0]
    if max([*expected.positive.values(), *expected.negative.values(), expected.zero]) < 1 << 63 and (
            max(keys) - min(keys) < 100_000):  # orjson's range; merge_json fills a list over the keys' span
        assert merged == merge_json([orjson.loads(orjson.dumps(s.to_json())) for s in parts] or [{}])


def test_lanes_never_carry_into_the_next_key() -> None:
    top = (1 << 64) - 1
    dense = QuantileSketch(positive={k: top for k in range(10)})
    assert merge_encoded([encode(dense)] * 3) == QuantileSketch(positive={k: 3 * top for k in range(10)})
    busy = QuantileSketch(positive={k: 200 + k for k in range(50)})
    assert merge_encoded([encode(busy)] * 1000) == QuantileSketch(positive={k: 1000 * (200 + k) for k in range(50)})


def test_small_sketches_are_small_and_busy_ones_dense() -> None:
    few = QuantileSketch().add_all([120.5, 133.0])
    assert len(encode(few)) <= 12 < len(orjson.dumps(few.to_json()))
    busy = QuantileSketch().add_all([100 + i * 0.37 for i in range(5_000)])
    keys = len(busy.positive)
    assert len(encode(busy)) <= 2 * keys + 12  # a byte or two per bucket, no key stored per bucket
    assert decode(encode(busy)) == busy


def test_accuracies_that_differ_are_refused() -> None:
    with pytest.raises(ValueError, match="different accuracy"):
        merge_encoded([encode(QuantileSketch(0.01).add(3.0)), encode(QuantileSketch(0.02).add(3.0))])
    with pytest.raises(ValueError, match="different accuracy"):
        merge_encoded([b"", encode(QuantileSketch(0.02).add(3.0))])  # b"" is of the default accuracy


@given(st.binary(max_size=64))
@settings(max_examples=500)
def test_any_bytes_decode_or_raise_a_decode_error(blob: bytes) -> None:
    try:
        sketch = decode(blob)
    except SketchDecodeError:
        with pytest.raises(SketchDecodeError):
            merge_encoded([blob])
        return
    assert merge_encoded([blob]) == sketch or not blob


@given(sketches(), st.data())
def test_cut_or_extended_bytes_are_refused(sketch: QuantileSketch, data: st.DataObject) -> None:
    blob = encode(sketch)
    cut = data.draw(st.integers(1, len(blob) - 1)) if len(blob) > 1 else None
    if cut is not None:
        with pytest.raises(SketchDecodeError):
            decode(blob[:cut])
    with pytest.raises(SketchDecodeError):
        decode(blob + b"\x00")
    with pytest.raises(SketchDecodeError):
        decode("{}")  # type: ignore[arg-type]  # the JSON form is not the stored form


def test_negative_counts_and_keys_out_of_range_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode(QuantileSketch(positive={5: -1}))
    with pytest.raises(ValueError):
        encode(QuantileSketch(positive={1 << 40: 1}))
    with pytest.raises(ValueError):
        encode(QuantileSketch(positive={5: 1 << 64}))


def test_windows_of_a_few_samples_merge_as_folding_merge() -> None:
    """Thousands of small window sketches (the shape merged inline), mixed with busy, negative
    and zero-heavy ones (merged store by store)."""
    rng = random.Random(3)
    parts = [QuantileSketch().add_all([rng.lognormvariate(5, 1) for _ in range(rng.randrange(1, 4))])
             for _ in range(3_000)]
    parts += [QuantileSketch().add_all([rng.lognormvariate(5, 1) for _ in range(2_000)]),
              QuantileSketch().add_all([-3.5, 1e-12, 7.0]), QuantileSketch(zero=500).add(1e300),
              QuantileSketch().add(2.0, 300)]
    rng.shuffle(parts)
    expected = QuantileSketch()
    for s in parts:
        expected = expected.merge(s)
    assert merge_encoded([encode(s) for s in parts]) == expected
    with pytest.raises(ValueError, match="different accuracy"):
        merge_encoded([encode(QuantileSketch(0.02).add(3.0)), *(encode(s) for s in parts[:5])])
