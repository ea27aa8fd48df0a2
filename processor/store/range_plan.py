"""The plan of a metric range: which window intervals are read from rollups and which
segments from raw samples (see :mod:`processor.store.metric_queries`). Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from processor.store.db import HOUR_MS

Interval = tuple[int, int]
"""A half-open time interval ``[lo, hi)`` in epoch ms."""


@dataclass(frozen=True, slots=True)
class Plan:
    covered: frozenset[Interval]
    """Window intervals read from ``metric_rollups`` (every matching row in them is final)."""
    raw: tuple[Interval, ...]
    """The rest of the range, in order, adjacent pieces merged: read from raw samples."""


def plan_range(
    windows: Iterable[tuple[int, int, bool]], start: int, end: int, bucket_ms: int | None = None
) -> Plan:
    """Split ``[start, end)`` between rollups and raw samples. Pure.

    ``windows`` are ``(window_start, window_end, final)`` of the matching rollup rows. A window
    interval is covered when it lies inside ``[start, end)``, every row with that interval is
    final, it overlaps no other interval, and (with ``bucket_ms``) it lies inside one bucket
    ``[start + k bucket_ms, start + (k + 1) bucket_ms)``. The raw segments are the complement.
    """
    final: dict[Interval, bool] = {}
    for lo, hi, is_final in windows:
        final[(lo, hi)] = final.get((lo, hi), True) and bool(is_final)
    overlapping = _overlapping(sorted(final))
    covered = frozenset(
        iv for iv, ok in final.items()
        if ok and iv not in overlapping and start <= iv[0] < iv[1] <= end
        and (bucket_ms is None or (iv[0] - start) // bucket_ms == (iv[1] - 1 - start) // bucket_ms)
    )
    return Plan(covered, complement(sorted(covered), start, end))


def _overlapping(intervals: Sequence[Interval]) -> set[Interval]:
    """The intervals (sorted, distinct) that overlap at least one other."""
    out: set[Interval] = set()
    reach: int | None = None
    for i, (lo, hi) in enumerate(intervals):
        if reach is not None and lo < reach:
            out.add((lo, hi))
        if i + 1 < len(intervals) and intervals[i + 1][0] < hi:
            out.add((lo, hi))
        reach = hi if reach is None else max(reach, hi)
    return out


def complement(covered: Sequence[Interval], start: int, end: int) -> tuple[Interval, ...]:
    """``[start, end)`` minus the sorted, disjoint ``covered`` intervals."""
    out: list[Interval] = []
    at = start
    for lo, hi in covered:
        if lo > at:
            out.append((at, lo))
        at = max(at, hi)
    if at < end:
        out.append((at, end))
    return tuple(out)


def runs(block: int, window_ms: int, mask: int, block_ms: int = HOUR_MS) -> tuple[Interval, ...]:
    """The windows of ``mask`` (bit i: the window at ``block + i window_ms``) as intervals,
    adjacent ones joined; ``block_ms``: the length of the block (an hour, or a day)."""
    if mask == (1 << (block_ms // window_ms)) - 1:
        return ((block, block + block_ms),)
    out: list[Interval] = []
    i = 0
    while mask:
        if mask & 1:
            lo = i
            while mask & 1:
                mask >>= 1
                i += 1
            out.append((block + lo * window_ms, block + i * window_ms))
        else:
            skip = (mask & -mask).bit_length() - 1
            mask >>= skip
            i += skip
    return tuple(out)
