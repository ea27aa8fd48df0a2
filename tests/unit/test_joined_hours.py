"""Consecutive hour blocks of one bucket read as one block for a time series
(processor.store.tier_reads.joined_hours). Pure; the oracle tests of the queries cover the
whole path (tests/unit/test_queries.py, test_type_windows.py)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from processor.store.db import DAY_MS, HOUR_MS
from processor.store.tier_reads import Block, RollupRow, candidates, joined_hours

H0 = 1_767_225_600_000  # a UTC midnight
W = 60_000


def hour(h: int, count: int, total: float, *, size: int | None = W, runs: tuple[tuple[int, int], ...] | None = None,
         empty: bool = False) -> Block:
    at = H0 + h * HOUR_MS
    if empty:
        return Block(HOUR_MS, (), ())
    return Block(HOUR_MS, (RollupRow(at, at + HOUR_MS, 1, count, total, 1.0, 9.0, None),),
                 runs if runs is not None else ((at, at + HOUR_MS),), size)


def test_consecutive_hours_of_a_bucket_become_one_block_with_their_sums_and_runs_joined():
    start = H0 + 30 * 60_000  # buckets of a day start mid-hour: hours 1..23 lie inside the first
    hours = {H0 + h * HOUR_MS: hour(h, h, 2.0 * h) for h in range(1, 24)}
    out = joined_hours(hours, start, 24 * HOUR_MS)
    assert list(out) == [H0 + HOUR_MS]
    block = out[H0 + HOUR_MS]
    assert block.length == 23 * HOUR_MS and block.runs == ((H0 + HOUR_MS, H0 + 24 * HOUR_MS),) and block.window_ms == W
    (row,) = block.rows
    assert (row.count, row.sum, row.min, row.max) == (sum(range(1, 24)), 2.0 * sum(range(1, 24)), 1.0, 9.0)


def test_a_bucket_edge_a_gap_or_another_window_size_starts_a_new_block():
    start = H0
    hours = {H0 + h * HOUR_MS: hour(h, 1, 1.0) for h in (0, 1, 2, 3, 5, 6)}
    hours[H0 + 7 * HOUR_MS] = hour(7, 1, 1.0, size=2 * W)
    out = joined_hours(hours, start, 2 * HOUR_MS)  # buckets of two hours: 0-1, 2-3, 4-5, 6-7
    assert sorted((b - H0) // HOUR_MS for b in out) == [0, 2, 5, 6, 7]
    assert [out[H0 + b * HOUR_MS].length // HOUR_MS for b in (0, 2, 5, 6, 7)] == [2, 2, 1, 1, 1]


def test_runs_with_holes_stay_apart_and_an_empty_hour_joins_its_neighbours():
    hours = {
        H0: hour(0, 3, 3.0, runs=((H0, H0 + 10 * W), (H0 + 20 * W, H0 + HOUR_MS))),
        H0 + HOUR_MS: hour(1, 0, 0.0, empty=True),
        H0 + 2 * HOUR_MS: hour(2, 2, math.inf, runs=((H0 + 2 * HOUR_MS, H0 + 2 * HOUR_MS + W),)),
    }
    (block,) = joined_hours(hours, H0, 24 * HOUR_MS).values()
    assert block.runs == ((H0, H0 + 10 * W), (H0 + 20 * W, H0 + HOUR_MS), (H0 + 2 * HOUR_MS, H0 + 2 * HOUR_MS + W))
    assert block.length == 3 * HOUR_MS and block.rows[0].count == 5 and block.rows[0].sum == math.inf


def test_spans_and_blocks_with_known_windows_are_left_alone():
    span = Block(10 * W, (), (), W, True)
    known = Block(HOUR_MS, (), (), W, False, ((H0 + HOUR_MS - W, H0 + HOUR_MS + W),))
    hours = {H0: hour(0, 1, 1.0), H0 + HOUR_MS: known, H0 + 2 * HOUR_MS: span, H0 + 3 * HOUR_MS: hour(3, 1, 1.0)}
    assert joined_hours(hours, H0, 24 * HOUR_MS) == hours


def _normal(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if out and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


@given(st.lists(st.tuples(st.integers(0, 47), st.integers(0, 50), st.sampled_from([W, 2 * W])), max_size=40),
       st.integers(0, HOUR_MS * 3), st.sampled_from([HOUR_MS, 3 * HOUR_MS, 24 * HOUR_MS]))
def test_every_bucket_keeps_its_count_sum_extent_and_windows(spec, offset, bucket_ms):
    start = H0 + offset
    hours = {
        H0 + h * HOUR_MS: hour(h, c, float(c), size=size) for h, c, size in spec
        if H0 + h * HOUR_MS >= start  # as candidates() gives them: whole hours inside one bucket
        and (H0 + h * HOUR_MS - start) // bucket_ms == (H0 + (h + 1) * HOUR_MS - 1 - start) // bucket_ms
    }

    def per_bucket(blocks: dict[int, Block]) -> dict[int, tuple[int, float]]:
        out: dict[int, tuple[int, float]] = {}
        for b, block in blocks.items():
            k = (b - start) // bucket_ms
            assert k == (b + block.length - 1 - start) // bucket_ms  # inside one bucket
            for r in block.rows:
                c, s = out.get(k, (0, 0.0))
                out[k] = (c + r.count, s + r.sum)
        return out

    joined = joined_hours(hours, start, bucket_ms)
    assert per_bucket(joined) == per_bucket(hours)
    assert _normal([(b, b + block.length) for b, block in joined.items()]) == _normal(
        [(b, b + HOUR_MS) for b in hours])
    assert _normal([iv for block in joined.values() for iv in block.runs]) == _normal(
        [iv for block in hours.values() for iv in block.runs])
    for b, block in joined.items():  # one window size a block
        sizes = {hours[h].window_ms for h in range(b, b + block.length, HOUR_MS)}
        assert sizes == {block.window_ms}


def _candidates_by_definition(start: int, end: int, length: int, bucket_ms: int | None, skip_days: set[int]) -> list[int]:
    first = -(-start // length) * length
    return [b for b in range(first, end - length + 1, length)
            if (bucket_ms is None or (b - start) // bucket_ms == (b + length - 1 - start) // bucket_ms)
            and b - b % DAY_MS not in skip_days]


@given(st.integers(0, 40 * DAY_MS), st.integers(0, 40 * DAY_MS), st.sampled_from([HOUR_MS, DAY_MS]),
       st.one_of(st.none(), st.sampled_from([60_000, HOUR_MS, 2 * HOUR_MS, DAY_MS, 7 * DAY_MS, HOUR_MS + 1]),
                 st.integers(1, 3 * DAY_MS)),
       st.sets(st.integers(0, 45).map(lambda d: d * DAY_MS), max_size=4))
def test_candidates_are_the_whole_blocks_inside_one_bucket(start: int, span: int, length: int, bucket_ms: int | None,
                                                           skip_days: set[int]) -> None:
    assert candidates(start, start + span, length, bucket_ms, skip_days) == _candidates_by_definition(
        start, start + span, length, bucket_ms, skip_days)
