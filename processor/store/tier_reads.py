"""Which blocks of a metric range (whole hours, whole UTC days) the coarse tiers may stand in for,
and the filters and rows the metric queries share (see :mod:`processor.store.metric_queries`).

A block is read from its tier rows only when they provably stand for exactly the window rows
stored, all final, all of one size that divides the block (the same for every matching series):

* **hours** (``metric_rollups_hourly``): every window row of the metric that starts in the hour
  is accounted for by an hourly row (the counts agree, over all series, from covering indexes),
  and every matching hourly row merged all of its series' windows of the hour (counted now
  through the primary key), all final;
* **days** (``metric_rollups_daily``): the same, with the window rows per day and series counted
  by triggers on ``metric_rollups`` (``metric_rollup_day_counts``, kept in the transaction of
  every write or delete of a window row, whoever makes it): the counts of every series of the
  metric add up to the daily rows' ``windows``, and every matching daily row's ``windows`` and
  ``final_windows`` equal its series' count. A daily row's ``windows`` adds its hourly rows',
  which count the windows inside their hour, so a day holding a window that crosses an hour is
  never read from the tier (as such an hour is not).

The block's windows are then exactly the windows a window-by-window plan would cover, given as
runs (adjacent windows joined) so that the planner can check that no other window overlaps them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from processor.errors import ConfigError
from processor.store.db import DAY_MS, HOUR_MS
from processor.store.range_plan import Interval, runs

Tuples = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
"""Runs one read statement: all its rows as tuples."""

_HOUR_TOTALS = (
    "SELECT a.value, "
    "(SELECT COUNT(*) FROM metric_rollups AS m WHERE m.metric_type = ? AND m.window_start >= a.value "
    f"AND m.window_start < a.value + {HOUR_MS}), "
    "(SELECT COALESCE(SUM(h.windows), 0) FROM metric_rollups_hourly AS h WHERE h.metric_type = ? "
    "AND h.hour_start = a.value) "
    "FROM json_each(?) AS a"
)
"""Per hour (a JSON list of hour starts): the window rows of the metric that start in it, and
the windows its hourly rows merged, over every series (both counted from covering indexes)."""
_DAY_TOTALS = (
    "SELECT a.value, "
    "(SELECT COALESCE(SUM(c.windows), 0) FROM metric_rollup_day_counts AS c WHERE c.metric_type = ? "
    "AND c.day_start = a.value), "
    "(SELECT COALESCE(SUM(d.windows), 0) FROM metric_rollups_daily AS d WHERE d.metric_type = ? "
    "AND d.day_start = a.value) "
    "FROM json_each(?) AS a"
)
"""Per day: the window rows of the metric that start in it (as the triggers counted them), and
the windows its daily rows merged, over every series."""


@dataclass(frozen=True, slots=True)
class Filter:
    """The tenant and label conditions shared by raw samples and rollup rows (all the tables
    have ``tenant_id`` and a ``labels`` JSON object). A label pair matches when the object has
    that key with that string value."""

    metric_type: str
    tenant_id: str | None
    labels: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, metric_type: str, tenant_id: str | None, labels: Mapping[str, str] | None) -> Filter:
        if not isinstance(metric_type, str) or not metric_type:
            raise ConfigError(f"the metric type must be a non-empty string, not {metric_type!r}")
        pairs = list((labels or {}).items())
        for key, value in pairs:
            if not isinstance(key, str) or not isinstance(value, str) or not key:
                raise ConfigError(f"a label filter is a non-empty string key and a string value, not {key!r}={value!r}")
        return cls(metric_type, tenant_id, tuple(sorted(pairs)))

    def sql_for(self, table: str) -> str:
        """`` AND ...`` conditions on ``table``'s columns (empty when there are none)."""
        parts = []
        if self.tenant_id is not None:
            parts.append(f" AND {table}.tenant_id = ?")
        for key, _ in self.labels:
            if _plain_label(key):
                parts.append(f" AND json_extract({table}.labels, ?) = ?")
            else:
                parts.append(
                    f" AND EXISTS (SELECT 1 FROM json_each({table}.labels) AS l WHERE l.key = ? AND l.value = ?)"
                )
        return "".join(parts)

    @property
    def params(self) -> list[Any]:
        out: list[Any] = [] if self.tenant_id is None else [self.tenant_id]
        for key, value in self.labels:
            out += (f'$."{key}"' if _plain_label(key) else key, value)
        return out


def _plain_label(key: str) -> bool:
    """Whether ``key`` can be named in a JSON path (``$."key"``), which SQLite reads without
    escapes; other keys are matched through ``json_each`` (about 1.5x slower)."""
    return all(c not in '"\\' and c >= " " for c in key)


@dataclass(frozen=True, slots=True)
class RollupRow:
    """A rollup row read for a query: a window, or an hourly or daily row spanning its block."""

    window_start: int
    window_end: int
    final: int
    count: int
    sum: float
    min: float | None
    max: float | None
    sketch: bytes | None


@dataclass(frozen=True, slots=True)
class Block:
    """An hour or a day read from its tier rows."""

    length: int
    """``HOUR_MS`` or ``DAY_MS``."""
    rows: tuple[RollupRow, ...]
    """The matching tier rows, as rollup rows spanning the block."""
    runs: tuple[Interval, ...]
    """The windows they merged (of every matching series), adjacent ones joined."""


def candidates(start: int, end: int, length: int, bucket_ms: int | None, skip_days: Collection[int] = ()) -> list[int]:
    """The starts of the blocks of ``length`` (a day, or an hour) inside ``[start, end)`` (and
    inside one bucket), leaving out those inside one of the days starting at ``skip_days``."""
    first = -(-start // length) * length
    return [
        b for b in range(first, end - length + 1, length)
        if (bucket_ms is None or (b - start) // bucket_ms == (b + length - 1 - start) // bucket_ms)
        and b - b % DAY_MS not in skip_days
    ]


def tiered_hours(tuples: Tuples, where: Filter, hours: Sequence[int], *, with_sketch: bool) -> dict[int, Block]:
    """Of ``hours``, those whose matching window rows may be replaced by their hourly rows (see
    the module docstring), by start."""
    if not hours:
        return {}
    totals = tuples(_HOUR_TOTALS, [where.metric_type, where.metric_type, orjson.dumps(list(hours)).decode()])
    accounted = [int(h) for h, windows, merged in totals if windows == merged]
    if not accounted:
        return {}
    sketch = "h.sketch" if with_sketch else "NULL"
    sql = (
        "SELECT h.hour_start, h.windows, h.final_windows, h.window_ms, h.coverage, h.count, h.sum, h.min, h.max, "
        f"{sketch}, CASE WHEN h.windows = h.final_windows THEN (SELECT COUNT(*) FROM metric_rollups AS m "
        "WHERE m.series = h.series AND m.window_start >= h.hour_start AND m.window_start < h.hour_end) END "
        "FROM json_each(?) AS a CROSS JOIN metric_rollups_hourly AS h "
        f"WHERE h.metric_type = ? AND h.hour_start = a.value{where.sql_for('h')}"
    )
    rows = tuples(sql, [orjson.dumps(accounted).decode(), where.metric_type, *where.params])
    return _blocks(accounted, rows, HOUR_MS)


def tiered_days(tuples: Tuples, where: Filter, days: Sequence[int], *, with_sketch: bool) -> dict[int, Block]:
    """Of ``days``, those whose matching window rows may be replaced by their daily rows (see the
    module docstring), by start."""
    if not days:
        return {}
    totals = tuples(_DAY_TOTALS, [where.metric_type, where.metric_type, orjson.dumps(list(days)).decode()])
    accounted = [int(d) for d, windows, merged in totals if windows == merged]
    if not accounted:
        return {}
    sketch = "d.sketch" if with_sketch else "NULL"
    sql = (
        "SELECT d.day_start, d.windows, d.final_windows, d.window_ms, d.coverage, d.count, d.sum, d.min, d.max, "
        f"{sketch}, (SELECT c.windows FROM metric_rollup_day_counts AS c WHERE c.metric_type = d.metric_type "
        "AND c.day_start = d.day_start AND c.series = d.series) "
        "FROM json_each(?) AS a CROSS JOIN metric_rollups_daily AS d "
        f"WHERE d.metric_type = ? AND d.day_start = a.value{where.sql_for('d')}"
    )
    rows = tuples(sql, [orjson.dumps(accounted).decode(), where.metric_type, *where.params])
    return _blocks(accounted, rows, DAY_MS)


def _blocks(accounted: Sequence[int], rows: Sequence[tuple[Any, ...]], length: int) -> dict[int, Block]:
    """The blocks of ``accounted`` whose every matching tier row (``block_start, windows,
    final_windows, window_ms, coverage, count, sum, min, max, sketch, stored windows``) merged
    all of its series' windows in the block, all final, of the one size of every such row."""
    members: dict[int, list[tuple[Any, ...]]] = {b: [] for b in accounted}
    refused: set[int] = set()
    for row in rows:
        block, windows, final_windows, window_ms, stored = row[0], row[1], row[2], row[3], row[10]
        if window_ms is None or not windows == final_windows == stored:
            refused.add(block)
        members[block].append(row)
    out: dict[int, Block] = {}
    for block, found in members.items():
        sizes = {row[3] for row in found}
        if block in refused or len(sizes) > 1:
            continue
        mask = 0
        for row in found:
            mask |= int(row[4], 16)
        out[block] = Block(
            length,
            tuple(RollupRow(block, block + length, 1, *row[5:10]) for row in found),
            runs(block, sizes.pop(), mask, length) if found else (),
        )
    return out
