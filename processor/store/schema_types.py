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
