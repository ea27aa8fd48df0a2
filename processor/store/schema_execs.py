"""Schema 9 (:data:`EXECS_VERSION`), the compact layout of executions and steps (a step of
:data:`processor.store.schema.MIGRATIONS`).

The texts an execution repeats (tenant, workflow id and name, user, step keys and names, the
current step) are stored once in ``names`` under an integer id (columns ``*_ref``); statuses are
small integers (:data:`STATUSES`); ids are stored as SQLite stores a sample's event id (the 16
bytes of a UUID's canonical text, else the text: :func:`processor.store.series.event_id`).
``executions`` has an integer row id (``seq``), which its steps are keyed by: ``steps`` is
``WITHOUT ROWID`` with the key (execution, step id), so an execution's steps are one range of
it and need no index of their own. The tables they replace, ``workflow_executions_monitor`` and
``workflow_step_executions``, stay readable with the same columns, as views; the query API reads
the compact tables as stored (:data:`EXECUTION_REFS`, :data:`STEP_REFS`) and decodes them itself,
with the same results.

A step is stored under its execution: the sink writes steps only inside their execution's
snapshot, and a step row without its execution is not kept. A step id is unique within its
execution (schema 8 kept one row per step id: two executions' steps of one id were one row, the
last written).
"""

from __future__ import annotations

EXECS_VERSION = 9
"""The schema version whose step this is (renumber here: :mod:`processor.store.schema`,
:mod:`processor.store.db` and :mod:`processor.store.pgdialect` use it)."""

STATUSES = ("completed", "failed", "running", "cancelled", "pending")
"""An execution's or a step's status, by its stored code (its index; 0 and 1 take no bytes)."""

ACTIVE_CODES = "2, 4"
"""The codes of ``running`` and ``pending`` (SQL)."""
FINISHED_CODES = "0, 1, 3"
"""The codes of ``completed``, ``failed`` and ``cancelled`` (SQL)."""


def status_text(column: str) -> str:
    """SQL: the status text of the code in ``column``."""
    cases = " ".join(f"WHEN {code} THEN '{name}'" for code, name in enumerate(STATUSES))
    return f"CASE {column} {cases} END"


def status_code(column: str) -> str:
    """SQL: the code of the status text in ``column`` (NULL for any other text)."""
    cases = " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(STATUSES))
    return f"CASE {column} {cases} END"


def id_text(column: str, *, pg: bool = False) -> str:
    """SQL: a stored id as its text (SQLite keeps a UUID's as its 16 bytes; PostgreSQL keeps text)."""
    if pg:
        return column
    hexed = f"hex({column})"
    return (f"CASE WHEN typeof({column}) = 'blob' THEN lower(substr({hexed}, 1, 8) || '-' || substr({hexed}, 9, 4) "
            f"|| '-' || substr({hexed}, 13, 4) || '-' || substr({hexed}, 17, 4) || '-' || substr({hexed}, 21)) "
            f"ELSE {column} END")


def id_of(stored: str | bytes) -> str:
    """A stored id as its text (Python's :func:`id_text`)."""
    if isinstance(stored, bytes):
        h = stored.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return stored


EXECS_TABLES = f"""
CREATE TABLE names (
  id INTEGER PRIMARY KEY,          -- given on first use (what it means is this database's own)
  name TEXT NOT NULL
);
CREATE UNIQUE INDEX idx_names_name ON names(name);

CREATE TABLE executions (
  seq INTEGER PRIMARY KEY,         -- the row id; what steps are keyed by (this database's own)
  id TEXT NOT NULL,                -- the execution id (SQLite: its 16 bytes when it is a UUID's text)
  tenant_ref INTEGER NOT NULL,     -- names.id of tenant_id
  workflow_ref INTEGER NOT NULL,   -- of workflow_id
  workflow_name_ref INTEGER NOT NULL,
  user_ref INTEGER NOT NULL,
  status INTEGER NOT NULL,         -- a code of processor.store.schema_execs.STATUSES
  started_at INTEGER NOT NULL,     -- epoch ms; the first known event time while pending
  completed_at INTEGER,
  duration INTEGER,
  steps_total INTEGER NOT NULL,
  steps_completed INTEGER NOT NULL,
  steps_failed INTEGER NOT NULL,
  current_step_ref INTEGER,        -- names.id of current_step
  error_message TEXT,
  metadata TEXT,                   -- JSON
  tokens_used INTEGER,
  cost REAL,
  last_event_at INTEGER NOT NULL,
  trace_id TEXT,
  span_id TEXT
);
CREATE UNIQUE INDEX idx_exec_id ON executions(id);
CREATE INDEX idx_exec_started ON executions(started_at);
CREATE INDEX idx_exec_tenant_started ON executions(tenant_ref, started_at);
CREATE INDEX idx_exec_active ON executions(status, tenant_ref, started_at) WHERE status IN ({ACTIVE_CODES});
CREATE INDEX idx_exec_completed ON executions(completed_at) WHERE completed_at IS NOT NULL;

CREATE TABLE steps (
  execution INTEGER NOT NULL,      -- executions.seq
  id TEXT NOT NULL,                -- the step id (SQLite: its 16 bytes when it is a UUID's text)
  step_key_ref INTEGER NOT NULL,   -- names.id of step_key
  step_name_ref INTEGER NOT NULL,
  status INTEGER NOT NULL,         -- a code of STATUSES
  started_at INTEGER NOT NULL,     -- epoch ms; the completion time while the start is unknown
  completed_at INTEGER,
  duration INTEGER,
  retry_count INTEGER NOT NULL,
  error_message TEXT,
  input_size INTEGER,
  output_size INTEGER,
  tokens_used INTEGER,
  cost REAL,
  trace_id TEXT,
  span_id TEXT,
  retried_at TEXT,                 -- JSON array of the retries' event times
  PRIMARY KEY (execution, id)
) WITHOUT ROWID
"""

_NAMED = (("e", "tenant_id"), ("e", "workflow_id"), ("e", "workflow_name"), ("e", "user_id"), ("e", "current_step"),
          ("s", "step_key"), ("s", "step_name"))

EXECS_COPY = """
INSERT INTO names(name) SELECT name FROM (
  {names}
) AS n WHERE name IS NOT NULL ORDER BY name;
INSERT INTO executions(id, tenant_ref, workflow_ref, workflow_name_ref, user_ref, status, started_at, completed_at,
  duration, steps_total, steps_completed, steps_failed, current_step_ref, error_message, metadata, tokens_used, cost,
  last_event_at, trace_id, span_id)
  SELECT {stored_id}, t.id, w.id, wn.id, u.id, {status}, e.started_at, e.completed_at, e.duration, e.steps_total,
  e.steps_completed, e.steps_failed, c.id, e.error_message, e.metadata, e.tokens_used, e.cost, e.last_event_at,
  e.trace_id, e.span_id
  FROM workflow_executions_monitor AS e JOIN names AS t ON t.name = e.tenant_id JOIN names AS w ON w.name = e.workflow_id
  JOIN names AS wn ON wn.name = e.workflow_name JOIN names AS u ON u.name = e.user_id
  LEFT JOIN names AS c ON c.name = e.current_step ORDER BY e.started_at, e.id;
INSERT INTO steps(execution, id, step_key_ref, step_name_ref, status, started_at, completed_at, duration, retry_count,
  error_message, input_size, output_size, tokens_used, cost, trace_id, span_id, retried_at)
  SELECT x.seq, {stored_step_id}, k.id, n.id, {step_status}, s.started_at, s.completed_at, s.duration, s.retry_count,
  s.error_message, s.input_size, s.output_size, s.tokens_used, s.cost, s.trace_id, s.span_id, s.retried_at
  FROM workflow_step_executions AS s JOIN executions AS x ON x.id = {stored_execution_id}
  JOIN names AS k ON k.name = s.step_key JOIN names AS n ON n.name = s.step_name;
DROP TABLE workflow_step_executions;
DROP TABLE workflow_executions_monitor
"""


def execution_select(*, pg: bool = False) -> str:
    """``SELECT`` of the ``workflow_executions_monitor`` columns from ``executions AS e`` and the
    names it refers to: the view's body."""
    return (
        f"SELECT {id_text('e.id', pg=pg)} AS id, w.name AS workflow_id, wn.name AS workflow_name, t.name AS tenant_id, "
        f"u.name AS user_id, {status_text('e.status')} AS status, e.started_at, e.completed_at, e.duration, "
        "e.steps_total, e.steps_completed, e.steps_failed, c.name AS current_step, e.error_message, e.metadata, "
        "e.tokens_used, e.cost, e.last_event_at, e.trace_id, e.span_id "
        "FROM executions AS e JOIN names AS t ON t.id = e.tenant_ref JOIN names AS w ON w.id = e.workflow_ref "
        "JOIN names AS wn ON wn.id = e.workflow_name_ref JOIN names AS u ON u.id = e.user_ref "
        "LEFT JOIN names AS c ON c.id = e.current_step_ref"
    )


def step_select(*, pg: bool = False) -> str:
    """``SELECT`` of the ``workflow_step_executions`` columns from ``steps AS s`` joined to its
    execution ``e`` and the names: the view's body."""
    return (
        f"SELECT {id_text('s.id', pg=pg)} AS id, {id_text('e.id', pg=pg)} AS execution_id, k.name AS step_key, "
        f"n.name AS step_name, {status_text('s.status')} AS status, s.started_at, s.completed_at, s.duration, "
        "s.retry_count, s.error_message, s.input_size, s.output_size, s.tokens_used, s.cost, s.trace_id, s.span_id, "
        "s.retried_at FROM steps AS s JOIN executions AS e ON e.seq = s.execution "
        "JOIN names AS k ON k.id = s.step_key_ref JOIN names AS n ON n.id = s.step_name_ref"
    )


def execs_script(*, pg: bool = False) -> str:
    """The step to :data:`EXECS_VERSION`: the compact tables, the rows copied (SQLite: ids
    converted by ``axmon_event_id``), the old tables dropped and their views."""
    names = "\n  UNION ".join(
        f"SELECT {column} AS name FROM {'workflow_executions_monitor' if alias == 'e' else 'workflow_step_executions'}"
        for alias, column in _NAMED)
    convert = "{}" if pg else "axmon_event_id({})"
    copy = EXECS_COPY.format(
        names=names, stored_id=convert.format("e.id"), stored_step_id=convert.format("s.id"),
        stored_execution_id=convert.format("s.execution_id"), status=status_code("e.status"),
        step_status=status_code("s.status"),
    )
    views = (f"CREATE VIEW workflow_executions_monitor AS {execution_select(pg=pg)};\n"
             f"CREATE VIEW workflow_step_executions AS {step_select(pg=pg)}")
    return ";\n".join((EXECS_TABLES, copy, views))


EXECUTION_REFS = (
    "SELECT e.id, e.workflow_ref, e.workflow_name_ref, e.tenant_ref, e.user_ref, e.status, e.started_at, e.completed_at, "
    "e.duration, e.steps_total, e.steps_completed, e.steps_failed, e.current_step_ref, e.error_message, e.metadata, "
    "e.tokens_used, e.cost, e.last_event_at, e.trace_id, e.span_id FROM executions AS e"
)
"""``executions AS e`` as stored, in the order of the ``workflow_executions_monitor`` columns:
what the query API reads and decodes itself (names by :data:`NAMED_EXECUTION_COLUMNS`, the
status by :data:`STATUSES`, the id by :func:`id_of`), cheaper than the view's joins."""
STEP_REFS = (
    "SELECT s.id, e.id, s.step_key_ref, s.step_name_ref, s.status, s.started_at, s.completed_at, s.duration, "
    "s.retry_count, s.error_message, s.input_size, s.output_size, s.tokens_used, s.cost, s.trace_id, s.span_id, "
    "s.retried_at FROM steps AS s JOIN executions AS e ON e.seq = s.execution"
)
"""``steps AS s`` as stored with its execution's id, in the order of the ``workflow_step_executions`` columns."""
NAMED_EXECUTION_COLUMNS = (1, 2, 3, 4, 12)
"""The positions in :data:`EXECUTION_REFS` of the references to ``names``."""
NAMED_STEP_COLUMNS = (2, 3)
"""The positions in :data:`STEP_REFS` of the references to ``names``."""

EXECUTION_TABLES = frozenset({"names", "executions", "steps"})
"""The compact tables of executions and steps, read and compared through their views (their row
ids and name ids are the database's own)."""
