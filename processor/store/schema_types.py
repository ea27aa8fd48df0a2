"""Schema 10, the per-metric-type tier (a step of :data:`processor.store.schema.MIGRATIONS`; the
rows are built by :func:`processor.store.type_tier.rebuild_types`, run by the migration)."""

from __future__ import annotations

TYPE_TIER_VERSION = 10
"""The schema version whose step adds the tier (the one number to change when steps are renumbered)."""

_TYPE_TABLE = """
CREATE TABLE {table} (
  metric_type TEXT NOT NULL,
  tenant TEXT NOT NULL,            -- '': every series of the type; else the series of that tenant_id
  {start} INTEGER NOT NULL,
  windows INTEGER NOT NULL,        -- the sum of its {finer} rows' windows
  final_windows INTEGER NOT NULL,  -- those of its complete {finer} rows (all windows final); the columns below merge those
  window_ms INTEGER,               -- the common window_ms of its complete {finer} rows, else NULL
  coverage TEXT NOT NULL,          -- hex bit mask, their coverages or-ed: bit i = some window at {start} + i * window_ms
  count INTEGER NOT NULL,
  sum REAL,                        -- NULL: not a number (sums of +inf and -inf)
  min REAL,
  max REAL,
  sketch BLOB NOT NULL,            -- their sketches merged (b'' when none)
  PRIMARY KEY (metric_type, tenant, {start})
) WITHOUT ROWID
"""

V9_TABLES = ";\n".join((
    _TYPE_TABLE.format(table="type_hours", start="hour_start", finer="hourly"),
    _TYPE_TABLE.format(table="type_days", start="day_start", finer="daily"),
))
"""The per-metric-type tier: the hourly rows (``type_hours``) and the daily rows (``type_days``)
of one metric type merged across their labels, once per tenant and once across every tenant
(``tenant = ''``). A row is a pure function of the finer tier's rows of its type, tenant and
block (:func:`processor.store.type_tier.type_row`), kept by the sink in the transaction that
writes them; a query without label filters reads it only where it provably stands for exactly the
window rows stored, all final (:mod:`processor.store.type_reads`). The migration builds both
tables from the hourly and daily rows stored (:func:`processor.store.type_tier.rebuild_types`)."""

TYPE_WINDOWS_VERSION = 11
"""The schema version whose step adds the per-metric-type window tier."""

V11_TABLES = """
CREATE TABLE type_windows (
  metric_type TEXT NOT NULL,
  window_start INTEGER NOT NULL,
  windows INTEGER NOT NULL,        -- the metric_rollups rows of the type that start at window_start (every series)
  final_windows INTEGER NOT NULL,  -- how many of them are final; the columns below merge those
  window_ms INTEGER,               -- their common window_end - window_start, else NULL
  count INTEGER NOT NULL,
  sum REAL,                        -- NULL: not a number (sums of +inf and -inf)
  min REAL,
  max REAL,
  sketch BLOB NOT NULL,            -- their sketches merged (b'' when none)
  PRIMARY KEY (metric_type, window_start)
) WITHOUT ROWID
"""
"""The per-metric-type window tier: the window rows of one metric type that start at one time,
merged across their series (labels and tenants alike: there is no per-tenant row). A row is a pure
function of those window rows (:func:`processor.store.type_windows.window_type_row`), kept by the
sink in the transaction that writes them; a query without a tenant or label filter reads it only
inside an hour whose windows the rows provably account for, and only rows whose windows are all
final and of one size (:func:`processor.store.type_window_reads.typed_windows`). The migration builds the
table from the window rows stored (:func:`processor.store.type_windows.rebuild_type_windows`)."""
