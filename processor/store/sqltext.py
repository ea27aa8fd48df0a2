"""What the schema (:mod:`processor.store.db`) and the tiers' code (:mod:`processor.store.hourly`,
:mod:`processor.store.daily`) share: the tiers' periods the upsert statement they write with, and the
intervals a metric query binds."""

from __future__ import annotations

HOUR_MS = 3_600_000
"""The period of ``metric_rollups_hourly``."""
DAY_MS = 86_400_000
"""The period of ``metric_rollups_daily`` (UTC days)."""
SEGMENTS_CTE = (
    "WITH seg(lo, hi) AS (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
    "FROM json_each(?)) "
)
"""Intervals of a metric range, bound as one JSON parameter ``[[lo, hi], ...]``, as the table
``seg``; joined first (``CROSS JOIN``) so each interval is one index range scan."""


def upsert_sql(table: str, names: tuple[str, ...], key: str) -> str:
    """An upsert of every column of ``names`` on conflict with ``key`` (comma-separated)."""
    keys = {k.strip() for k in key.split(",")}
    columns = ", ".join(names)
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n not in keys)
    marks = ", ".join("?" for _ in names)
    return f"INSERT INTO {table}({columns}) VALUES ({marks}) ON CONFLICT({key}) DO UPDATE SET {updates}"
