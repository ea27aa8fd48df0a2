"""The store's SQL in PostgreSQL: the SQLite statements the store is written in, translated.

The store's modules are written once, in SQLite's dialect with ``?`` parameters; on PostgreSQL
:class:`processor.store.pgconn.PgConnection` runs each statement through :func:`translate`
(cached: the statements are a fixed set). What it rewrites:

- ``?`` becomes ``%s`` (outside string literals) and ``%`` becomes ``%%``;
- ``BEGIN IMMEDIATE`` becomes ``BEGIN``; ``INSERT OR IGNORE`` becomes ``ON CONFLICT DO NOTHING``;
  ``INDEXED BY`` hints are dropped;
- in an upsert's ``DO UPDATE SET c = c + excluded.c`` the old ``c`` is qualified with the
  table (PostgreSQL finds it ambiguous);
- every ``ORDER BY`` term gets SQLite's null order (``NULLS FIRST`` ascending, ``NULLS LAST``
  descending);
- ``sqlite_master`` becomes the tables, indexes and views of the current schema;
- the JSON idioms the store uses: ``json_each(?)`` over a parameter (a JSON array) becomes
  ``sq_each(?)`` (index ``key``, integer ``value``, element ``item``), ``json_extract`` of an
  element of it ``item ->> n`` (text beside ``series =``, else an integer), ``json_extract(t.labels,
  ?)`` ``sq_label``, and ``json_each(t.labels)`` ``json_each_text``. Any other JSON function
  raises :class:`Untranslatable`, so a new idiom fails its tests on PostgreSQL instead of
  running wrong.

The schema is SQLite's migrations translated the same way (:func:`schema_statements`): column
types become PostgreSQL's (``BIGINT``, ``DOUBLE PRECISION``, ``BYTEA``, text in the ``C``
collation, which orders like SQLite's byte order), and SQLite's triggers are replaced by the
PL/pgSQL ones in :data:`PG_EXTRAS`.
"""

from __future__ import annotations

import re
from functools import lru_cache

from processor.errors import AxmonError
from processor.store.schema import V8_PG, split_statements, trigger_name
from processor.store.schema_execs import EXECS_VERSION, execs_script


class Untranslatable(AxmonError):
    """A statement uses SQLite SQL that has no PostgreSQL translation here."""


_MASTER = (
    "(SELECT 'table' AS type, tablename::text AS name FROM pg_tables WHERE schemaname = current_schema() "
    "UNION ALL SELECT 'index', indexname::text FROM pg_indexes WHERE schemaname = current_schema() "
    "UNION ALL SELECT 'view', viewname::text FROM pg_views WHERE schemaname = current_schema()) AS sqlite_master"
)


@lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """``sql`` (SQLite, ``?`` parameters) as PostgreSQL (``%s`` parameters)."""
    out = sql.strip()
    if re.match(r"BEGIN\s+IMMEDIATE\b", out, re.I):
        return "BEGIN"
    if re.match(r"INSERT\s+OR\s+IGNORE\s+INTO\b", out, re.I):
        out = re.sub(r"^INSERT\s+OR\s+IGNORE\s+INTO\b", "INSERT INTO", out, flags=re.I) + " ON CONFLICT DO NOTHING"
    elif re.match(r"INSERT\s+OR\s+", out, re.I):
        raise Untranslatable(f"no PostgreSQL translation for {out[:60]!r}")
    out = re.sub(r"\s+INDEXED\s+BY\s+\w+", "", out, flags=re.I)
    out = re.sub(r"\bFROM\s+sqlite_master\b", "FROM " + _MASTER, out)
    out = _qualified_increments(out)
    out = _json(out)
    out = _null_order(out)
    return _placeholders(out)


def _qualified_increments(sql: str) -> str:
    table = re.match(r"INSERT\s+INTO\s+(\w+)", sql, re.I)
    if table is None or "excluded." not in sql:
        return sql
    return re.sub(r"\b(\w+) = \1 ([-+]) excluded\.\1\b", rf"\1 = {table.group(1)}.\1 \2 excluded.\1", sql)


def _json(sql: str) -> str:
    # the segments are computed once, not per row of the join (there are no statistics yet)
    out = re.sub(r"\bWITH (\w+)\((\w+), (\w+)\) AS \(", r"WITH \1(\2, \3) AS MATERIALIZED (", sql)
    out = out.replace("json_each(?)", "sq_each(?)")
    out = re.sub(r"series = json_extract\((\w+)\.value, '\$\[(\d+)\]'\)", r"series = (\1.item ->> \2)", out)
    out = re.sub(r"json_extract\((\w+\.)?value, '\$\[(\d+)\]'\)", r"((\1item ->> \2)::bigint)", out)
    out = re.sub(r"json_extract\((\w+)\.labels, \?\)", r"sq_label(\1.labels, ?)", out)
    out = re.sub(r"json_each\((\w+)\.labels\)", r"json_each_text(\1.labels::json)", out)
    if re.search(r"\bjson_(?!each_text\()\w*\(", out):
        raise Untranslatable(f"a JSON function with no PostgreSQL translation: {sql[:200]!r}")
    return out


_ORDER_END = re.compile(r"\b(LIMIT|OFFSET|UNION|EXCEPT|INTERSECT)\b", re.I)


def _null_order(sql: str) -> str:
    """Each ``ORDER BY`` term with SQLite's order of nulls (first ascending, last descending)."""
    out, at = [], 0
    for match in re.finditer(r"\bORDER\s+BY\b", sql, re.I):
        if match.start() < at:
            continue
        out.append(sql[at:match.end()])
        depth, end = 0, len(sql)
        for i in range(match.end(), len(sql)):
            c = sql[i]
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth < 0:
                    end = i
                    break
            elif depth == 0 and sql[i - 1].isspace() and _ORDER_END.match(sql, i):
                end = i
                break
        terms, depth, start = [], 0, match.end()
        for i in range(match.end(), end):
            depth += sql[i] == "("
            depth -= sql[i] == ")"
            if sql[i] == "," and depth == 0:
                terms.append(sql[start:i])
                start = i + 1
        terms.append(sql[start:end])
        out.append(",".join(_null_ordered(t) for t in terms))
        at = end
    out.append(sql[at:])
    return "".join(out)


def _null_ordered(term: str) -> str:
    body = term.rstrip()
    tail = term[len(body):]
    if re.search(r"\bNULLS\s+(FIRST|LAST)$", body, re.I):
        return term
    nulls = " NULLS LAST" if re.search(r"\bDESC$", body, re.I) else " NULLS FIRST"
    return body + nulls + tail


def _placeholders(sql: str) -> str:
    out, quote = [], ""
    for c in sql:
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "?":
            out.append("%s")
            continue
        out.append("%%" if c == "%" else c)
    return "".join(out)


# -- the schema ------------------------------------------------------------------------------------

_TYPES = (
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),
)

REPLACED_TRIGGERS = frozenset({
    "metric_rollups_counted", "metric_rollups_uncounted", "metric_rollups_recounted",
    "performance_metrics_counted", "performance_metrics_uncounted", "performance_metrics_recounted",
    "rollup_windows_counted", "rollup_windows_uncounted", "rollup_windows_recounted",
    "samples_counted", "samples_uncounted", "samples_recounted",
})
"""SQLite's triggers that :data:`PG_EXTRAS` replaces (one PL/pgSQL trigger per table)."""

FUNCTIONS = (
    """CREATE OR REPLACE FUNCTION sq_each(list text) RETURNS TABLE(key bigint, value bigint, item jsonb)
    LANGUAGE sql IMMUTABLE AS $$
      SELECT e.ord - 1, CASE WHEN jsonb_typeof(e.elem) = 'number' THEN (e.elem #>> '{}')::numeric::bigint END, e.elem
      FROM jsonb_array_elements(list::jsonb) WITH ORDINALITY AS e(elem, ord)
    $$""",
    """CREATE OR REPLACE FUNCTION sq_label(labels text, path text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
      SELECT labels::jsonb ->> CASE WHEN path LIKE '$."%"' THEN substr(path, 4, length(path) - 4) ELSE substr(path, 3) END
    $$""",
    """CREATE OR REPLACE FUNCTION instr(haystack text, needle text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
      SELECT strpos(haystack, needle)
    $$""",
)
"""SQLite's functions the translated statements call (created on every open for writing)."""

_DAY = "{row}.window_start - {row}.window_start % 86400000"

PG_EXTRAS: dict[int, tuple[str, ...]] = {
    5: ("ALTER TABLE logs ADD COLUMN rowid BIGINT GENERATED ALWAYS AS IDENTITY",),
    6: (
        f"""CREATE FUNCTION metric_rollups_count() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP IN ('DELETE', 'UPDATE') THEN
            UPDATE metric_rollup_day_counts SET windows = windows - 1 WHERE metric_type = OLD.metric_type
              AND day_start = {_DAY.format(row="OLD")} AND series = OLD.series;
            DELETE FROM metric_rollup_day_counts WHERE metric_type = OLD.metric_type
              AND day_start = {_DAY.format(row="OLD")} AND series = OLD.series AND windows = 0;
          END IF;
          IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO metric_rollup_day_counts(metric_type, day_start, series, windows)
              VALUES (NEW.metric_type, {_DAY.format(row="NEW")}, NEW.series, 1)
              ON CONFLICT(metric_type, day_start, series) DO UPDATE SET windows = metric_rollup_day_counts.windows + 1;
          END IF;
          RETURN NULL;
        END $$""",
        "CREATE TRIGGER metric_rollups_counted AFTER INSERT OR DELETE OR UPDATE OF metric_type, window_start, series "
        "ON metric_rollups FOR EACH ROW EXECUTE FUNCTION metric_rollups_count()",
        """CREATE FUNCTION performance_metrics_count() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP IN ('DELETE', 'UPDATE') THEN
            UPDATE metric_counts SET samples = samples - 1
              WHERE metric_type = OLD.metric_type AND tenant = COALESCE(OLD.tenant_id, '');
            DELETE FROM metric_counts WHERE metric_type = OLD.metric_type AND tenant = COALESCE(OLD.tenant_id, '')
              AND samples = 0;
          END IF;
          IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO metric_counts(metric_type, tenant, samples) VALUES (NEW.metric_type, COALESCE(NEW.tenant_id, ''), 1)
              ON CONFLICT(metric_type, tenant) DO UPDATE SET samples = metric_counts.samples + 1;
          END IF;
          RETURN NULL;
        END $$""",
        "CREATE TRIGGER performance_metrics_counted AFTER INSERT OR DELETE OR UPDATE OF metric_type, tenant_id "
        "ON performance_metrics FOR EACH ROW EXECUTE FUNCTION performance_metrics_count()",
    ),
}
PG_EXTRAS[8] = (
    """CREATE FUNCTION rollup_windows_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE metric_rollup_day_counts AS c SET windows = c.windows - 1 FROM series AS s
          WHERE s.id = OLD.series_id AND c.metric_type = s.metric_type AND c.series = s.key
          AND c.day_start = OLD.window_start - OLD.window_start % 86400000;
        DELETE FROM metric_rollup_day_counts AS c USING series AS s
          WHERE s.id = OLD.series_id AND c.metric_type = s.metric_type AND c.series = s.key
          AND c.day_start = OLD.window_start - OLD.window_start % 86400000 AND c.windows = 0;
      END IF;
      IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO metric_rollup_day_counts(metric_type, day_start, series, windows)
          SELECT s.metric_type, NEW.window_start - NEW.window_start % 86400000, s.key, 1 FROM series AS s
          WHERE s.id = NEW.series_id
          ON CONFLICT(metric_type, day_start, series) DO UPDATE SET windows = metric_rollup_day_counts.windows + 1;
      END IF;
      RETURN NULL;
    END $$""",
    "CREATE TRIGGER rollup_windows_counted AFTER INSERT OR DELETE OR UPDATE OF series_id, window_start "
    "ON rollup_windows FOR EACH ROW EXECUTE FUNCTION rollup_windows_count()",
    """CREATE FUNCTION samples_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE metric_counts AS c SET samples = c.samples - 1 FROM series AS s
          WHERE s.id = OLD.series_id AND c.metric_type = s.metric_type AND c.tenant = COALESCE(s.tenant_id, '');
        DELETE FROM metric_counts AS c USING series AS s
          WHERE s.id = OLD.series_id AND c.metric_type = s.metric_type AND c.tenant = COALESCE(s.tenant_id, '')
          AND c.samples = 0;
      END IF;
      IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO metric_counts(metric_type, tenant, samples)
          SELECT s.metric_type, COALESCE(s.tenant_id, ''), 1 FROM series AS s WHERE s.id = NEW.series_id
          ON CONFLICT(metric_type, tenant) DO UPDATE SET samples = metric_counts.samples + 1;
      END IF;
      RETURN NULL;
    END $$""",
    "CREATE TRIGGER samples_counted AFTER INSERT OR DELETE OR UPDATE OF series_id "
    "ON samples FOR EACH ROW EXECUTE FUNCTION samples_count()",
    "DROP FUNCTION metric_rollups_count()",
    "DROP FUNCTION performance_metrics_count()",
)
"""What PostgreSQL needs beyond the translated migration of a version: ``logs.rowid`` (SQLite's
implicit row id, which ``get_logs`` follows) and the triggers that keep the counts tables (from
version 8 on the compact tables, see :mod:`processor.store.schema_layout`)."""


_SKETCH_TABLES = ("metric_rollups", "metric_rollups_hourly", "metric_rollups_daily")

PG_REPLACED: dict[int, tuple[str, ...]] = {
    7: (
        "DO $$ BEGIN IF " + " OR ".join(f"EXISTS (SELECT 1 FROM {t})" for t in _SKETCH_TABLES) + " THEN "
        "RAISE EXCEPTION 'its sketches are stored as JSON: rebuild it (axmon replay --swap --live-db URL)'; "
        "END IF; END $$",
        *(f"ALTER TABLE {t} ALTER COLUMN sketch TYPE BYTEA USING convert_to(sketch, 'UTF8')" for t in _SKETCH_TABLES),
    ),
}
"""Versions whose SQLite migration PostgreSQL does not run, and what it runs instead. Version 7
(sketches as bytes, converted by a Python function SQLite calls) declares the sketch columns
``BYTEA`` (SQLite keeps bytes in a ``TEXT`` column; PostgreSQL does not); a PostgreSQL database
is made at the newest version, so its tables are empty here, and one that is not is refused.
Version 8 (the compact metric layout) likewise: made empty, the old tables dropped (their
triggers with them), a database holding metric rows refused."""


def schema_statements(script: str) -> list[str]:
    """A migration script (SQLite DDL) as PostgreSQL statements; its triggers must be among
    :data:`REPLACED_TRIGGERS`."""
    out: list[str] = []
    for statement in split_statements(script):
        trigger = trigger_name(statement)
        if trigger is None:
            out.append(_ddl(statement))
        elif trigger not in REPLACED_TRIGGERS:
            raise Untranslatable(f"SQLite trigger {trigger} has no PostgreSQL version")
    return out


def _ddl(statement: str) -> str:
    if not re.match(r"(CREATE\s+TABLE|ALTER\s+TABLE)\b", statement, re.I):
        return statement
    # a column that SQLite numbers itself (its row id): an identity column
    statement = re.sub(r"\b(\w+) INTEGER PRIMARY KEY,", r"\1 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,", statement)
    for pattern, replacement in _TYPES:
        statement = pattern.sub(replacement, statement)
    return re.sub(r"\)\s*WITHOUT\s+ROWID\s*$", ")", statement, flags=re.I)


PG_REPLACED[8] = (
    "DO $$ BEGIN IF EXISTS (SELECT 1 FROM performance_metrics) OR EXISTS (SELECT 1 FROM metric_rollups) THEN "
    "RAISE EXCEPTION 'it holds metric rows in the layout of schema 7: rebuild it (axmon replay --swap --live-db URL)'; "
    "END IF; END $$",
    "DROP TABLE metric_rollups_daily, metric_rollups_hourly, metric_rollups, performance_metrics CASCADE",
    *(s for s in schema_statements(V8_PG) if not s.upper().startswith("DROP TABLE")),
)
PG_REPLACED[EXECS_VERSION] = tuple(schema_statements(execs_script(pg=True)))
"""Version 9 (the compact execution tables) copies the rows as SQLite does, the ids as they are
(PostgreSQL keeps them as text)."""
