"""Schema 8, the compact layout of the metric tables (a step of :data:`processor.store.schema.MIGRATIONS`)."""

from __future__ import annotations

V8_TABLES = """
CREATE TABLE series (
  id INTEGER PRIMARY KEY,          -- given on first use (what it means is this database's own)
  key TEXT NOT NULL,               -- JSON [tenant, metric_type, [[label, value], ...]]: the metrics topic's key
  tenant_id TEXT,
  metric_type TEXT NOT NULL,
  labels TEXT NOT NULL,            -- JSON object, keys sorted
  unit TEXT NOT NULL               -- the unit of the series' samples and windows that store none
);
CREATE UNIQUE INDEX idx_series_key ON series(key);
CREATE INDEX idx_series_type ON series(metric_type, tenant_id);

CREATE TABLE samples (
  series_id INTEGER NOT NULL,
  timestamp INTEGER NOT NULL,      -- occurred_at, epoch ms
  id TEXT NOT NULL,                -- the sample's event_id (SQLite: its 16 bytes when it is a UUID's text)
  value REAL NOT NULL,
  unit TEXT,                       -- NULL: the series' unit
  PRIMARY KEY (series_id, timestamp, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX idx_samples_id ON samples(id);

CREATE TABLE rollup_windows (
  series_id INTEGER NOT NULL,
  window_start INTEGER NOT NULL,
  window_end INTEGER NOT NULL,
  count INTEGER NOT NULL,
  sum REAL NOT NULL,
  min REAL,
  max REAL,
  sketch BLOB NOT NULL,
  final INTEGER NOT NULL,
  unit TEXT,                       -- NULL: the series' unit
  PRIMARY KEY (series_id, window_start)
) WITHOUT ROWID;

CREATE TABLE rollup_hours (
  series_id INTEGER NOT NULL,
  hour_start INTEGER NOT NULL,
  unit TEXT NOT NULL,
  windows INTEGER NOT NULL,
  final_windows INTEGER NOT NULL,
  window_ms INTEGER,
  coverage TEXT NOT NULL,
  count INTEGER NOT NULL,
  sum REAL NOT NULL,
  min REAL,
  max REAL,
  sketch BLOB NOT NULL,
  PRIMARY KEY (series_id, hour_start)
) WITHOUT ROWID;

CREATE TABLE rollup_days (
  series_id INTEGER NOT NULL,
  day_start INTEGER NOT NULL,
  unit TEXT NOT NULL,
  windows INTEGER NOT NULL,
  final_windows INTEGER NOT NULL,
  window_ms INTEGER,
  coverage TEXT NOT NULL,
  count INTEGER NOT NULL,
  sum REAL NOT NULL,
  min REAL,
  max REAL,
  sketch BLOB NOT NULL,
  PRIMARY KEY (series_id, day_start)
) WITHOUT ROWID
"""

V8_COPY = """
INSERT INTO series(key, tenant_id, metric_type, labels, unit)
  SELECT series, tenant_id, metric_type, labels, MIN(unit) FROM metric_rollups GROUP BY series ORDER BY series;
INSERT OR IGNORE INTO series(key, tenant_id, metric_type, labels, unit)
  SELECT axmon_series_key(tenant_id, metric_type, labels), tenant_id, metric_type, labels, MIN(unit)
  FROM performance_metrics GROUP BY 1 ORDER BY 1;
INSERT INTO samples(series_id, timestamp, id, value, unit)
  SELECT s.id, p.timestamp, axmon_event_id(p.id), p.value, NULLIF(p.unit, s.unit) FROM performance_metrics AS p
  JOIN series AS s ON s.key = axmon_series_key(p.tenant_id, p.metric_type, p.labels);
INSERT INTO rollup_windows(series_id, window_start, window_end, count, sum, min, max, sketch, final, unit)
  SELECT s.id, r.window_start, r.window_end, r.count, r.sum, r.min, r.max, r.sketch, r.final, NULLIF(r.unit, s.unit)
  FROM metric_rollups AS r JOIN series AS s ON s.key = r.series;
INSERT INTO rollup_hours(series_id, hour_start, unit, windows, final_windows, window_ms, coverage, count, sum, min, max, sketch)
  SELECT s.id, h.hour_start, h.unit, h.windows, h.final_windows, h.window_ms, h.coverage, h.count, h.sum, h.min, h.max,
  h.sketch FROM metric_rollups_hourly AS h JOIN series AS s ON s.key = h.series;
INSERT INTO rollup_days(series_id, day_start, unit, windows, final_windows, window_ms, coverage, count, sum, min, max, sketch)
  SELECT s.id, d.day_start, d.unit, d.windows, d.final_windows, d.window_ms, d.coverage, d.count, d.sum, d.min, d.max,
  d.sketch FROM metric_rollups_daily AS d JOIN series AS s ON s.key = d.series;
DROP TRIGGER metric_rollups_counted;
DROP TRIGGER metric_rollups_uncounted;
DROP TRIGGER metric_rollups_recounted;
DROP TRIGGER performance_metrics_counted;
DROP TRIGGER performance_metrics_uncounted;
DROP TRIGGER performance_metrics_recounted
"""

SAMPLE_ID = (
    "CASE WHEN typeof(p.id) = 'blob' THEN lower(substr(hex(p.id), 1, 8) || '-' || substr(hex(p.id), 9, 4) || '-' "
    "|| substr(hex(p.id), 13, 4) || '-' || substr(hex(p.id), 17, 4) || '-' || substr(hex(p.id), 21)) ELSE p.id END"
)
"""A stored sample id as its text (SQLite keeps a UUID's as its 16 bytes)."""

V8_VIEWS = """
DROP TABLE performance_metrics;
DROP TABLE metric_rollups;
DROP TABLE metric_rollups_hourly;
DROP TABLE metric_rollups_daily;
CREATE VIEW performance_metrics AS
  SELECT {sample_id} AS id, p.timestamp, s.metric_type, p.value, COALESCE(p.unit, s.unit) AS unit, s.labels, s.tenant_id
  FROM samples AS p JOIN series AS s ON s.id = p.series_id;
CREATE VIEW metric_rollups AS
  SELECT s.key AS series, r.window_start, r.window_end, s.tenant_id, s.metric_type, s.labels,
  COALESCE(r.unit, s.unit) AS unit, r.count, r.sum, r.min, r.max, r.sketch, r.final
  FROM rollup_windows AS r JOIN series AS s ON s.id = r.series_id;
CREATE VIEW metric_rollups_hourly AS
  SELECT s.key AS series, h.hour_start, h.hour_start + 3600000 AS hour_end, s.tenant_id, s.metric_type, s.labels,
  h.unit, h.windows, h.final_windows, h.window_ms, h.coverage, h.count, h.sum, h.min, h.max, h.sketch
  FROM rollup_hours AS h JOIN series AS s ON s.id = h.series_id;
CREATE VIEW metric_rollups_daily AS
  SELECT s.key AS series, d.day_start, d.day_start + 86400000 AS day_end, s.tenant_id, s.metric_type, s.labels,
  d.unit, d.windows, d.final_windows, d.window_ms, d.coverage, d.count, d.sum, d.min, d.max, d.sketch
  FROM rollup_days AS d JOIN series AS s ON s.id = d.series_id;
CREATE TRIGGER rollup_windows_counted AFTER INSERT ON rollup_windows BEGIN
  INSERT INTO metric_rollup_day_counts(metric_type, day_start, series, windows)
  SELECT metric_type, NEW.window_start - NEW.window_start % 86400000, key, 1 FROM series WHERE id = NEW.series_id
  ON CONFLICT(metric_type, day_start, series) DO UPDATE SET windows = windows + 1;
END;
CREATE TRIGGER rollup_windows_uncounted AFTER DELETE ON rollup_windows BEGIN
  UPDATE metric_rollup_day_counts SET windows = windows - 1
  WHERE (metric_type, series) = (SELECT metric_type, key FROM series WHERE id = OLD.series_id)
  AND day_start = OLD.window_start - OLD.window_start % 86400000;
  DELETE FROM metric_rollup_day_counts
  WHERE (metric_type, series) = (SELECT metric_type, key FROM series WHERE id = OLD.series_id)
  AND day_start = OLD.window_start - OLD.window_start % 86400000 AND windows = 0;
END;
CREATE TRIGGER rollup_windows_recounted AFTER UPDATE OF series_id, window_start ON rollup_windows BEGIN
  UPDATE metric_rollup_day_counts SET windows = windows - 1
  WHERE (metric_type, series) = (SELECT metric_type, key FROM series WHERE id = OLD.series_id)
  AND day_start = OLD.window_start - OLD.window_start % 86400000;
  DELETE FROM metric_rollup_day_counts
  WHERE (metric_type, series) = (SELECT metric_type, key FROM series WHERE id = OLD.series_id)
  AND day_start = OLD.window_start - OLD.window_start % 86400000 AND windows = 0;
  INSERT INTO metric_rollup_day_counts(metric_type, day_start, series, windows)
  SELECT metric_type, NEW.window_start - NEW.window_start % 86400000, key, 1 FROM series WHERE id = NEW.series_id
  ON CONFLICT(metric_type, day_start, series) DO UPDATE SET windows = windows + 1;
END;
CREATE TRIGGER samples_counted AFTER INSERT ON samples BEGIN
  INSERT INTO metric_counts(metric_type, tenant, samples)
  SELECT metric_type, COALESCE(tenant_id, ''), 1 FROM series WHERE id = NEW.series_id
  ON CONFLICT(metric_type, tenant) DO UPDATE SET samples = samples + 1;
END;
CREATE TRIGGER samples_uncounted AFTER DELETE ON samples BEGIN
  UPDATE metric_counts SET samples = samples - 1
  WHERE (metric_type, tenant) = (SELECT metric_type, COALESCE(tenant_id, '') FROM series WHERE id = OLD.series_id);
  DELETE FROM metric_counts
  WHERE (metric_type, tenant) = (SELECT metric_type, COALESCE(tenant_id, '') FROM series WHERE id = OLD.series_id)
  AND samples = 0;
END;
CREATE TRIGGER samples_recounted AFTER UPDATE OF series_id ON samples BEGIN
  UPDATE metric_counts SET samples = samples - 1
  WHERE (metric_type, tenant) = (SELECT metric_type, COALESCE(tenant_id, '') FROM series WHERE id = OLD.series_id);
  DELETE FROM metric_counts
  WHERE (metric_type, tenant) = (SELECT metric_type, COALESCE(tenant_id, '') FROM series WHERE id = OLD.series_id)
  AND samples = 0;
  INSERT INTO metric_counts(metric_type, tenant, samples)
  SELECT metric_type, COALESCE(tenant_id, ''), 1 FROM series WHERE id = NEW.series_id
  ON CONFLICT(metric_type, tenant) DO UPDATE SET samples = samples + 1;
END
"""
"""The compact layout of the metric tables: each series (tenant, metric type, labels and its
usual unit) stored once in ``series`` under an integer id, and the raw samples and every rollup
tier keyed by (series id, time), ``WITHOUT ROWID``, with no secondary index but the samples'
unique event ids (SQLite stores an id that is a UUID's canonical text as its 16 bytes): ``samples``,
``rollup_windows``, ``rollup_hours``, ``rollup_days`` (a row's ``unit`` is NULL when it is the
series', as nearly always). The tables they replace stay readable, with the same columns, as
views over them (``performance_metrics``, ``metric_rollups``, ``metric_rollups_hourly``,
``metric_rollups_daily``): readers are unchanged, and the views are what two databases are
compared by (series ids depend on the order series were first seen). The counts tables are kept
by triggers on the new tables, as before on the old ones. The step copies every row (SQLite: the
JSON series key of a raw sample is computed by ``axmon_series_key``, see
:func:`processor.store.series.series_key_of`)."""
