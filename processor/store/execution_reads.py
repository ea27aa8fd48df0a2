"""The SQL the query API reads executions and steps with: of schema 9's compact tables
(:mod:`processor.store.schema_execs`), or of the tables before, for a database not yet migrated
(read as it is, as a read-only connection never migrates)."""

from __future__ import annotations

from dataclasses import dataclass

from processor.store.schema import EXECUTION_COLUMNS, STEP_COLUMNS
from processor.store.schema_execs import ACTIVE_CODES, EXECUTION_REFS, FINISHED_CODES, STATUSES, STEP_REFS

_NAME = "(SELECT id FROM names WHERE name = ?)"


@dataclass(frozen=True, slots=True)
class ExecutionReads:
    """SQL fragments over ``executions AS e`` and ``steps AS s`` (or the tables before, under
    the same aliases); each condition binds one parameter."""

    compact: bool
    """Whether the rows are stored compact (names by id, status codes, ids as stored)."""
    executions: str
    """``SELECT`` of the execution columns (in ``workflow_executions_monitor``'s order) ``FROM ... AS e``."""
    steps: str
    """``SELECT`` of the step columns (in ``workflow_step_executions``' order) ``FROM ... AS s``."""
    table: str
    """The table that holds the executions' ids."""
    tenant: str
    workflow: str
    status: str
    """``e.status`` equal to a parameter given by :meth:`status_value`."""
    active: str
    finished: str
    step_of: str
    """The steps of the execution of the id bound."""
    steps_in: str
    """The steps of the executions of the ids bound (``{}``: the placeholders)."""
    step_group: str
    """What the steps of one execution share (the first term of their order)."""
    active_hint: str
    completed_hint: str

    def status_value(self, status: str) -> object:
        if not self.compact:
            return status
        return STATUSES.index(status) if status in STATUSES else -1


COMPACT = ExecutionReads(
    compact=True, executions=EXECUTION_REFS, steps=STEP_REFS, table="executions",
    tenant=f"e.tenant_ref = {_NAME}", workflow=f"e.workflow_ref = {_NAME}", status="e.status = ?",
    active=f"e.status IN ({ACTIVE_CODES})", finished=f"e.status IN ({FINISHED_CODES})",
    step_of="s.execution = (SELECT seq FROM executions WHERE id = ?)",
    steps_in="s.execution IN (SELECT seq FROM executions WHERE id IN ({}))", step_group="s.execution",
    active_hint="INDEXED BY idx_exec_active", completed_hint="INDEXED BY idx_exec_completed",
)

LEGACY = ExecutionReads(
    compact=False,
    executions=f"SELECT {', '.join(f'e.{c}' for c in EXECUTION_COLUMNS)} FROM workflow_executions_monitor AS e",
    steps=f"SELECT {', '.join(f's.{c}' for c in STEP_COLUMNS)} FROM workflow_step_executions AS s",
    table="workflow_executions_monitor", tenant="e.tenant_id = ?", workflow="e.workflow_id = ?", status="e.status = ?",
    active="e.status IN ('pending', 'running')", finished="e.status IN ('completed', 'failed', 'cancelled')",
    step_of="s.execution_id = ?", steps_in="s.execution_id IN ({})", step_group="s.execution_id",
    active_hint="INDEXED BY idx_executions_active", completed_hint="",
)
"""Schema 8 and before (``trace_id``, ``span_id`` and ``retried_at`` since schema 4)."""
