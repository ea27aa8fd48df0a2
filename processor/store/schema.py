"""The database's schema: each version's SQL (``MIGRATIONS``), the columns the sink binds, and the
sink's own tables. :mod:`processor.store.db` opens, migrates and configures databases with it."""

from __future__ import annotations

import re

from processor.store.schema_execs import EXECS_VERSION, EXECUTION_TABLES, execs_script
from processor.store.schema_layout import SAMPLE_ID
from processor.store.schema_layout import V8_COPY as _V8_COPY
from processor.store.schema_layout import V8_TABLES as _V8_TABLES
from processor.store.schema_layout import V8_VIEWS as _V8_VIEWS
from processor.store.schema_types import TYPE_TIER_VERSION, TYPE_WINDOWS_VERSION
from processor.store.schema_types import V9_TABLES as _V9_TABLES
from processor.store.schema_types import V11_TABLES as _V11_TABLES

_TRIGGER = re.compile(r"CREATE\s+TRIGGER\s+(\w+)", re.I)

SCHEMA_VERSION = 11

_V1 = """
CREATE TABLE workflow_executions_monitor (
  id TEXT PRIMARY KEY,
  workflow_id TEXT NOT NULL,
  workflow_name TEXT NOT NULL,
  tenant_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  status TEXT NOT NULL,            -- pending, running, completed, failed, cancelled
  started_at INTEGER NOT NULL,     -- epoch ms; the first known event time while pending
  completed_at INTEGER,
  duration INTEGER,
  steps_total INTEGER NOT NULL,
  steps_completed INTEGER NOT NULL DEFAULT 0,
  steps_failed INTEGER NOT NULL DEFAULT 0,
  current_step TEXT,
  error_message TEXT,
  metadata TEXT,                   -- JSON
  tokens_used INTEGER,
  cost REAL,
  last_event_at INTEGER NOT NULL
);
CREATE INDEX idx_executions_started ON workflow_executions_monitor(started_at DESC);
CREATE INDEX idx_executions_tenant_started ON workflow_executions_monitor(tenant_id, started_at DESC);
CREATE INDEX idx_executions_active ON workflow_executions_monitor(status, tenant_id, started_at DESC)
  WHERE status IN ('pending', 'running');

CREATE TABLE workflow_step_executions (
  id TEXT PRIMARY KEY,
  execution_id TEXT NOT NULL,
  step_key TEXT NOT NULL,
  step_name TEXT NOT NULL,
  status TEXT NOT NULL,            -- running, completed, failed
  started_at INTEGER NOT NULL,     -- epoch ms; the completion time while the start is unknown
  completed_at INTEGER,
  duration INTEGER,
  retry_count INTEGER NOT NULL DEFAULT 0,
  error_message TEXT,
  input_size INTEGER,
  output_size INTEGER,
  tokens_used INTEGER,
  cost REAL
);
CREATE INDEX idx_steps_execution ON workflow_step_executions(execution_id, started_at);

CREATE TABLE performance_metrics (
  id TEXT PRIMARY KEY,             -- the sample's event_id
  timestamp INTEGER NOT NULL,      -- occurred_at, epoch ms
  metric_type TEXT NOT NULL,
  value REAL NOT NULL,
  unit TEXT NOT NULL,
  labels TEXT NOT NULL,            -- JSON object
  tenant_id TEXT
);
CREATE INDEX idx_metrics_type_timestamp ON performance_metrics(metric_type, timestamp DESC, value);
CREATE INDEX idx_metrics_tenant ON performance_metrics(tenant_id, metric_type, timestamp, value);

CREATE TABLE metric_rollups (
  series TEXT NOT NULL,            -- JSON [tenant, metric_type, [[label, value], ...]]
  window_start INTEGER NOT NULL,
  window_end INTEGER NOT NULL,
  tenant_id TEXT,
  metric_type TEXT NOT NULL,
  labels TEXT NOT NULL,            -- JSON object
  unit TEXT NOT NULL,
  count INTEGER NOT NULL,
  sum REAL NOT NULL,
  min REAL,
  max REAL,
  sketch TEXT NOT NULL,            -- JSON, see schemas/json/derived/metric-rollups.schema.json
  final INTEGER NOT NULL,
  PRIMARY KEY (series, window_start)
);
CREATE INDEX idx_rollups_type_window ON metric_rollups(metric_type, window_start);
CREATE INDEX idx_rollups_end ON metric_rollups(window_end);

CREATE TABLE workflow_stats (
  tenant_id TEXT PRIMARY KEY,
  total INTEGER NOT NULL,
  pending INTEGER NOT NULL,
  running INTEGER NOT NULL,
  completed INTEGER NOT NULL,
  failed INTEGER NOT NULL,
  cancelled INTEGER NOT NULL,
  duration_sum INTEGER NOT NULL,   -- over executions with a duration
  duration_count INTEGER NOT NULL
);

CREATE TABLE dead_letters (
  topic TEXT NOT NULL,             -- where the bad input was
  partition INTEGER NOT NULL,
  "offset" INTEGER NOT NULL,
  reason TEXT NOT NULL,
  detail TEXT NOT NULL,
  timestamp INTEGER,
  key BLOB,
  value BLOB,
  PRIMARY KEY (topic, partition, "offset")
);
CREATE INDEX idx_dead_letters_time ON dead_letters(timestamp DESC);
CREATE INDEX idx_dead_letters_reason ON dead_letters(reason, timestamp DESC);

CREATE TABLE sink_offsets (
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  next_offset INTEGER NOT NULL,    -- the next offset to consume
  stream_time INTEGER NOT NULL,    -- largest event time applied from this partition
  PRIMARY KEY (topic, partition)
);
"""

EXECUTION_COLUMNS = (
    "id", "workflow_id", "workflow_name", "tenant_id", "user_id", "status", "started_at",
    "completed_at", "duration", "steps_total", "steps_completed", "steps_failed", "current_step",
    "error_message", "metadata", "tokens_used", "cost", "last_event_at", "trace_id", "span_id",
)
"""``workflow_executions_monitor``'s columns, in table order."""
STEP_COLUMNS = (
    "id", "execution_id", "step_key", "step_name", "status", "started_at", "completed_at",
    "duration", "retry_count", "error_message", "input_size", "output_size", "tokens_used", "cost",
    "trace_id", "span_id", "retried_at",
)
"""``workflow_step_executions``' columns, in table order."""

_V2 = """
CREATE TABLE alerts (
  id TEXT PRIMARY KEY,
  rule TEXT NOT NULL,
  kind TEXT NOT NULL,              -- threshold | stale
  severity TEXT NOT NULL,
  status TEXT NOT NULL,            -- pending | firing | acknowledged | resolved
  status_rank INTEGER NOT NULL,    -- 0..3 in that order: a row only moves forward
  tenant_id TEXT,
  metric_type TEXT,
  labels TEXT,                     -- JSON object
  series TEXT,
  execution_id TEXT,
  value REAL,                      -- the aggregated value at the last transition
  threshold REAL,
  partition INTEGER NOT NULL,      -- where acks for it go (the series' partition)
  pending_at INTEGER NOT NULL,     -- event time (epoch ms); wall clock for stale alerts
  fired_at INTEGER,
  acknowledged_at INTEGER,
  acknowledged_by TEXT,
  resolved_at INTEGER,
  updated_at INTEGER NOT NULL,     -- time of the last transition
  record TEXT NOT NULL             -- the whole record as published on axmon.alerts
);
CREATE INDEX idx_alerts_status ON alerts(status_rank, updated_at DESC);
CREATE INDEX idx_alerts_tenant ON alerts(tenant_id, updated_at DESC);

CREATE TABLE alert_history (
  alert_id TEXT NOT NULL,
  status TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (alert_id, status)
);
"""

_V3 = """
CREATE TABLE metric_rollups_hourly (
  series TEXT NOT NULL,            -- as in metric_rollups
  hour_start INTEGER NOT NULL,     -- floor(window_start / 3600000) * 3600000
  hour_end INTEGER NOT NULL,       -- hour_start + 3600000
  tenant_id TEXT,
  metric_type TEXT NOT NULL,
  labels TEXT NOT NULL,            -- JSON object
  unit TEXT NOT NULL,              -- of the newest final window ('' when none is final)
  windows INTEGER NOT NULL,        -- the series' metric_rollups rows that lie inside the hour
  final_windows INTEGER NOT NULL,  -- how many of them are final; the columns below merge those
  window_ms INTEGER,               -- their common size when it divides the hour, else NULL
  coverage TEXT NOT NULL,          -- hex bit mask: bit i = the window at hour_start + i * window_ms
  count INTEGER NOT NULL,
  sum REAL NOT NULL,               -- the windows' sums added in time order
  min REAL,
  max REAL,
  sketch TEXT NOT NULL,            -- JSON, their sketches merged (same form; {} when none)
  PRIMARY KEY (series, hour_start)
);
CREATE INDEX idx_rollups_hourly_type_hour ON metric_rollups_hourly(metric_type, hour_start, windows);
"""
"""The hourly tier: a pure function of the ``metric_rollups`` rows of its series and hour
(:func:`processor.store.hourly.hourly_row`), kept up to date by the sink in the transaction that
writes or deletes them; queries use a row only when it provably stands for exactly the windows
stored, all final (see :mod:`processor.store.queries`). A database migrated from version 2 starts with
the table empty: its older hours are read from the window rows, as before."""

_V4 = """
ALTER TABLE workflow_executions_monitor ADD COLUMN trace_id TEXT;   -- the engine's W3C trace id, if sent
ALTER TABLE workflow_executions_monitor ADD COLUMN span_id TEXT;    -- the engine's W3C span id, if sent
ALTER TABLE workflow_step_executions ADD COLUMN trace_id TEXT;
ALTER TABLE workflow_step_executions ADD COLUMN span_id TEXT;
ALTER TABLE workflow_step_executions ADD COLUMN retried_at TEXT;    -- JSON array of the retries' event times
CREATE INDEX idx_executions_completed ON workflow_executions_monitor(completed_at, id) WHERE completed_at IS NOT NULL;
"""
"""The trace context the engine sent (``trace_id``/``span_id`` on lifecycle events) and the
retries' times, so that ``axmon traces export`` builds from SQLite the same spans as the live
exporter builds from ``axmon.execution-state``; and the finished executions in completion order,
which the export pages through. Rows written before the migration have NULLs: their spans get
derived ids and no retry events."""

_V5 = """
CREATE TABLE logs (
  id TEXT PRIMARY KEY,             -- the record's event_id
  timestamp INTEGER NOT NULL,      -- occurred_at, epoch ms
  tenant_id TEXT,
  level TEXT NOT NULL,             -- trace, debug, info, warn, error, fatal
  severity_number INTEGER NOT NULL, -- OpenTelemetry: 1, 5, 9, 13, 17, 21
  message TEXT NOT NULL,
  execution_id TEXT,
  step_id TEXT,
  attributes TEXT NOT NULL,        -- JSON object
  trace_id TEXT,
  span_id TEXT,
  source TEXT
);
CREATE INDEX idx_logs_time ON logs(timestamp, id);
CREATE INDEX idx_logs_execution ON logs(execution_id, timestamp) WHERE execution_id IS NOT NULL;
CREATE INDEX idx_logs_severity ON logs(severity_number, timestamp);
"""
"""``log.recorded`` records as the sink stores them (insert-or-ignore by event id, like raw
samples, and kept as long as they are)."""

LOG_COLUMNS = (
    "id", "timestamp", "tenant_id", "level", "severity_number", "message", "execution_id", "step_id",
    "attributes", "trace_id", "span_id", "source",
)
"""``logs``' columns, in table order."""

_V6 = """
CREATE TABLE metric_rollups_daily (
  series TEXT NOT NULL,            -- as in metric_rollups
  day_start INTEGER NOT NULL,      -- floor(hour_start / 86400000) * 86400000 (UTC)
  day_end INTEGER NOT NULL,        -- day_start + 86400000
  tenant_id TEXT,
  metric_type TEXT NOT NULL,
  labels TEXT NOT NULL,            -- JSON object
  unit TEXT NOT NULL,              -- of the newest complete hour ('' when none)
  windows INTEGER NOT NULL,        -- the sum of its hourly rows' windows
  final_windows INTEGER NOT NULL,  -- those of its complete hours (all final); the columns below merge those hours
  window_ms INTEGER,               -- the common window_ms of its complete hours, else NULL
  coverage TEXT NOT NULL,          -- hex bit mask: bit i = the window at day_start + i * window_ms
  count INTEGER NOT NULL,
  sum REAL NOT NULL,               -- their hourly sums added in time order
  min REAL,
  max REAL,
  sketch TEXT NOT NULL,            -- JSON, their hourly sketches merged ({} when none)
  PRIMARY KEY (series, day_start)
);
CREATE INDEX idx_rollups_daily_type_day ON metric_rollups_daily(metric_type, day_start, windows);

CREATE TABLE metric_rollup_day_counts (
  metric_type TEXT NOT NULL,
  day_start INTEGER NOT NULL,
  series TEXT NOT NULL,
  windows INTEGER NOT NULL,        -- metric_rollups rows of the series that start in the day
  PRIMARY KEY (metric_type, day_start, series)
) WITHOUT ROWID;
INSERT INTO metric_rollup_day_counts(metric_type, day_start, series, windows)
  SELECT metric_type, window_start - window_start % 86400000, series, COUNT(*) FROM metric_rollups GROUP BY 1, 2, 3;
CREATE TRIGGER metric_rollups_counted AFTER INSERT ON metric_rollups BEGIN
  INSERT INTO metric_rollup_day_counts(metric_type, day_start, series, windows)
  VALUES (NEW.metric_type, NEW.window_start - NEW.window_start % 86400000, NEW.series, 1)
  ON CONFLICT(metric_type, day_start, series) DO UPDATE SET windows = windows + 1;
END;
CREATE TRIGGER metric_rollups_uncounted AFTER DELETE ON metric_rollups BEGIN
  UPDATE metric_rollup_day_counts SET windows = windows - 1 WHERE metric_type = OLD.metric_type
  AND day_start = OLD.window_start - OLD.window_start % 86400000 AND series = OLD.series;
  DELETE FROM metric_rollup_day_counts WHERE metric_type = OLD.metric_type
  AND day_start = OLD.window_start - OLD.window_start % 86400000 AND series = OLD.series AND windows = 0;
END;
CREATE TRIGGER metric_rollups_recounted AFTER UPDATE OF metric_type, window_start, series ON metric_rollups BEGIN
  UPDATE metric_rollup_day_counts SET windows = windows - 1 WHERE metric_type = OLD.metric_type
  AND day_start = OLD.window_start - OLD.window_start % 86400000 AND series = OLD.series;
  DELETE FROM metric_rollup_day_counts WHERE metric_type = OLD.metric_type
  AND day_start = OLD.window_start - OLD.window_start % 86400000 AND series = OLD.series AND windows = 0;
  INSERT INTO metric_rollup_day_counts(metric_type, day_start, series, windows)
  VALUES (NEW.metric_type, NEW.window_start - NEW.window_start % 86400000, NEW.series, 1)
  ON CONFLICT(metric_type, day_start, series) DO UPDATE SET windows = windows + 1;
END;

CREATE TABLE metric_counts (
  metric_type TEXT NOT NULL,
  tenant TEXT NOT NULL,            -- tenant_id, '' for samples without one
  samples INTEGER NOT NULL,        -- performance_metrics rows of the type and tenant
  PRIMARY KEY (metric_type, tenant)
) WITHOUT ROWID;
INSERT INTO metric_counts(metric_type, tenant, samples)
  SELECT metric_type, COALESCE(tenant_id, ''), COUNT(*) FROM performance_metrics GROUP BY 1, 2;
CREATE TRIGGER performance_metrics_counted AFTER INSERT ON performance_metrics BEGIN
  INSERT INTO metric_counts(metric_type, tenant, samples) VALUES (NEW.metric_type, COALESCE(NEW.tenant_id, ''), 1)
  ON CONFLICT(metric_type, tenant) DO UPDATE SET samples = samples + 1;
END;
CREATE TRIGGER performance_metrics_uncounted AFTER DELETE ON performance_metrics BEGIN
  UPDATE metric_counts SET samples = samples - 1
  WHERE metric_type = OLD.metric_type AND tenant = COALESCE(OLD.tenant_id, '');
  DELETE FROM metric_counts WHERE metric_type = OLD.metric_type AND tenant = COALESCE(OLD.tenant_id, '')
  AND samples = 0;
END;
CREATE TRIGGER performance_metrics_recounted AFTER UPDATE OF metric_type, tenant_id ON performance_metrics BEGIN
  UPDATE metric_counts SET samples = samples - 1
  WHERE metric_type = OLD.metric_type AND tenant = COALESCE(OLD.tenant_id, '');
  DELETE FROM metric_counts WHERE metric_type = OLD.metric_type AND tenant = COALESCE(OLD.tenant_id, '')
  AND samples = 0;
  INSERT INTO metric_counts(metric_type, tenant, samples) VALUES (NEW.metric_type, COALESCE(NEW.tenant_id, ''), 1)
  ON CONFLICT(metric_type, tenant) DO UPDATE SET samples = samples + 1;
END
"""
"""The day tier and the counts that prove it and answer ``get_metric_count``.

``metric_rollups_daily``: a pure function of the ``metric_rollups_hourly`` rows of its series and
UTC day (:func:`processor.store.daily.daily_row`), kept by the sink in the transaction that writes
them, read only where it provably stands for exactly the windows stored (see
:mod:`processor.store.metric_queries`). ``metric_rollup_day_counts`` and ``metric_counts`` are kept
by triggers, so every writer (the sink, retention, replay, a test inserting rows) keeps them in
its own transaction and an ignored ``INSERT OR IGNORE`` counts nothing; a count that reaches 0
is deleted, so the tables are a function of the rows stored (as a replay needs): the window rows per
(metric type, day, series), which the day tier's proof compares with the daily rows, and the raw
samples per (metric type, tenant). The migration counts what is stored and builds the daily rows
from the hourly rows (:func:`processor.store.daily.rebuild_daily`, run by :func:`migrate`)."""

_V7 = """
UPDATE metric_rollups SET sketch = axmon_sketch_bytes(sketch);
UPDATE metric_rollups_hourly SET sketch = axmon_sketch_bytes(sketch);
UPDATE metric_rollups_daily SET sketch = axmon_sketch_bytes(sketch)
"""
"""Sketches stored as compact bytes (:mod:`processor.folds.sketch_codec`) instead of their JSON
form, in the ``sketch`` column of ``metric_rollups``, ``metric_rollups_hourly`` and
``metric_rollups_daily`` (declared ``TEXT`` by the steps that made them; SQLite keeps the bytes
as a ``BLOB`` whatever the declared type). An empty tier sketch (``{}``) becomes ``b""``. The
published form (the ``axmon.metric-rollups`` topic) stays JSON. The step converts every stored
sketch, once (:func:`_sketch_bytes`); rows keep their other columns, so the tiers' proofs hold as
before."""

MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3, 4: _V4, 5: _V5, 6: _V6, 7: _V7,
                              8: ";\n".join((_V8_TABLES, _V8_COPY, _V8_VIEWS.format(sample_id=SAMPLE_ID))),
                              EXECS_VERSION: execs_script(), TYPE_TIER_VERSION: _V9_TABLES,
                              TYPE_WINDOWS_VERSION: _V11_TABLES}
"""Version -> the SQL that brings version - 1 to it."""

V8_PG = ";\n".join((_V8_TABLES, _V8_VIEWS.format(sample_id="p.id")))
"""Version 8 without its copy of the rows (PostgreSQL: see :mod:`processor.store.pgdialect`)."""

LAYOUT_TABLES = frozenset({"series", "samples", "rollup_windows", "rollup_hours", "rollup_days", *EXECUTION_TABLES})
"""The compact tables (metrics: schema 8; executions and steps: schema 9), read and compared
through their views (their series ids, name ids and row ids are the database's own)."""
TYPE_TABLES = frozenset({"type_hours", "type_days", "type_windows"})
"""The per-metric-type tiers (schema 10: a function of the hourly and daily rows; schema 11: of the
window rows), compared between databases directly (their keys are names and times, not series ids)."""

SINK_TABLES = frozenset({"sink_offsets", "sink_status", "sink_derived_times"})
"""The sink's own bookkeeping: not part of the materialised state."""

SINK_STATUS = """
CREATE TABLE IF NOT EXISTS sink_status (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_write_at INTEGER NOT NULL   -- epoch ms (wall clock) of the last batch written
)
"""
"""One row: when the sink last wrote a batch (same transaction as ``sink_offsets``). Not
versioned: created if missing on every open for writing, so older databases keep their schema
version and older axmon versions ignore it."""


SINK_DERIVED_TIMES = """
CREATE TABLE IF NOT EXISTS sink_derived_times (
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  stream_time INTEGER NOT NULL,    -- largest event time of derived-lane samples applied from it
  PRIMARY KEY (topic, partition)
)
"""
"""The metrics partitions' derived-lane stream times (see :func:`processor.folds.metrics_core.admission_limit`),
written with ``sink_offsets``; not versioned, like ``sink_status`` (a missing row is 0)."""


def split_statements(script: str) -> list[str]:
    """The statements of a migration script, comments dropped; a trigger's body (``BEGIN`` ...
    ``END``, semicolons inside) stays whole."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    out: list[str] = []
    pending = ""
    for piece in "\n".join(lines).split(";"):
        pending = f"{pending};{piece}" if pending else piece
        head = pending.strip()
        if trigger_name(head) is not None and not head.upper().endswith("END"):
            continue
        if head:
            out.append(head)
        pending = ""
    return out


def trigger_name(statement: str) -> str | None:
    """The name of the trigger ``statement`` creates (``None``: it creates none)."""
    found = _TRIGGER.match(statement)
    return None if found is None else found.group(1)
