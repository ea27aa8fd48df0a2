"""Executions as OpenTelemetry spans: the pure span builder, its OTLP encoding, and the export
of a database to a real local OTLP/HTTP receiver whose span trees equal the database's
executions and steps."""

from __future__ import annotations

import asyncio
import sqlite3
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from processor.cli import main
from processor.folds.execution import apply, snapshot
from processor.folds.spans import (
    RETRY_EVENT,
    StatusCode,
    derived_trace_id,
    execution_span_id,
    execution_spans,
    step_span_id,
)
from processor.runtime.otlp import ExportError, OtlpClient, encode_traces, traces_url
from processor.runtime.traces import export_database, spans_of_snapshot
from processor.store.db import SCHEMA_VERSION, open_for_writing
from processor.store.queries import Monitor
from processor.store.sinkdb import write_executions
from producers.factory import EventFactory
from schemas.events import LifecycleEvent
from tests.otlp_receiver import attributes, otlp_receiver
from tests.unit.scenarios import lifecycle_scenarios

ENGINE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ENGINE_SPAN = "00f067aa0ba902b7"
STEP_SPAN = "b7ad6b7169203331"


def fold(events: list[LifecycleEvent]) -> dict[str, dict[str, Any]]:
    """Execution id -> final snapshot."""
    states: dict[str, Any] = {}
    for e in events:
        states[e.execution_id] = apply(states.get(e.execution_id), e)
    return {k: snapshot(v) for k, v in states.items()}


def review_events(*, traced: bool = False, e: str = "e-1") -> list[LifecycleEvent]:
    """A failed execution: one step that failed, was retried twice and completed; one that failed."""
    clock = iter(range(1_000_000, 2_000_000, 10))
    f = EventFactory(clock=lambda: next(clock), trace_context=lambda: None)
    ctx: dict[str, Any] = {"trace_id": ENGINE_TRACE, "span_id": ENGINE_SPAN} if traced else {}
    started = f.start_execution("wf_review", "Code Review", "tenant_a", "alice", 2, execution_id=e,
                                occurred_at=1_000, **ctx)
    lint = f.start_step(e, "lint", "Lint", step_id=f"s-lint{e[1:]}", occurred_at=1_100,
                        **({"trace_id": ENGINE_TRACE, "span_id": STEP_SPAN} if traced else {}))
    return [
        started, lint,
        f.step_event("step.failed", f"s-lint{e[1:]}", error_message="rate limited", occurred_at=1_200),
        f.step_event("step.retried", f"s-lint{e[1:]}", occurred_at=1_300),
        f.step_event("step.retried", f"s-lint{e[1:]}", occurred_at=1_350),
        f.step_event("step.completed", f"s-lint{e[1:]}", tokens_used=1200, cost=0.25, occurred_at=1_500),
        f.start_step(e, "review", "Review", step_id=f"s-review{e[1:]}", occurred_at=1_600),
        f.step_event("step.failed", f"s-review{e[1:]}", error_message="model timed out", occurred_at=1_900),
        f.end_execution("execution.failed", e, error_message="review failed", occurred_at=2_000),
    ]


def test_an_execution_is_a_root_span_with_a_child_per_step() -> None:
    execution = fold(review_events())["e-1"]
    root, lint, review = execution_spans(execution, execution["steps"])
    assert root.trace_id == lint.trace_id == review.trace_id == derived_trace_id("e-1")
    assert len(root.trace_id) == 16 and len(root.span_id) == 8
    assert root.parent_span_id is None and lint.parent_span_id == review.parent_span_id == root.span_id
    assert (lint.span_id, review.span_id) == (step_span_id("e-1", "s-lint-1"), step_span_id("e-1", "s-review-1"))
    assert root.name == "invoke_workflow Code Review"
    assert (root.start_ns, root.end_ns) == (1_000 * 10**6, 2_000 * 10**6)
    assert (root.status_code, root.status_message) == (StatusCode.ERROR, "review failed")
    a = dict(root.attributes)
    assert a["gen_ai.operation.name"] == "invoke_workflow" and a["gen_ai.workflow.name"] == "Code Review"
    assert (a["axmon.tenant.id"], a["user.id"], a["axmon.execution.status"], a["error.type"]) == (
        "tenant_a", "alice", "failed", "execution_failed")
    assert (a["axmon.usage.total_tokens"], a["axmon.usage.cost"]) == (1200, 0.25)
    assert not any(k.startswith("gen_ai.usage.") for k in a)  # a total is not input or output tokens
    s = dict(lint.attributes)
    assert (s["axmon.step.key"], s["axmon.step.name"], s["axmon.step.retry_count"]) == ("lint", "Lint", 2)
    assert lint.status_code == StatusCode.OK and (lint.start_ns, lint.end_ns) == (1_100 * 10**6, 1_500 * 10**6)
    assert [(e.name, e.time_ns, dict(e.attributes)) for e in lint.events] == [
        (RETRY_EVENT, 1_300 * 10**6, {"axmon.retry.number": 1}), (RETRY_EVENT, 1_350 * 10**6, {"axmon.retry.number": 2})]
    assert (review.status_code, review.status_message, dict(review.attributes)["error.type"]) == (
        StatusCode.ERROR, "model timed out", "step_failed")


def test_ids_are_derived_so_a_reexport_is_the_same_trace() -> None:
    a = execution_spans(fold(review_events())["e-1"], fold(review_events())["e-1"]["steps"])
    b = execution_spans(fold(list(reversed(review_events())))["e-1"], fold(review_events())["e-1"]["steps"])
    assert a == b
    assert encode_traces(a) == encode_traces(b)
    assert execution_span_id("e-1") != execution_span_id("e-2") and derived_trace_id("e-1") != derived_trace_id("e-2")


def test_the_engines_trace_context_makes_axmons_spans_join_its_trace() -> None:
    execution = fold(review_events(traced=True))["e-1"]
    assert (execution["trace_id"], execution["span_id"]) == (ENGINE_TRACE, ENGINE_SPAN)
    root, lint, review = execution_spans(execution, execution["steps"])
    assert root.trace_id.hex() == lint.trace_id.hex() == review.trace_id.hex() == ENGINE_TRACE
    assert root.parent_span_id is not None and root.parent_span_id.hex() == ENGINE_SPAN
    assert root.span_id == execution_span_id("e-1")  # axmon's own id, never the engine's
    assert [(link.trace_id.hex(), link.span_id.hex()) for link in lint.links] == [(ENGINE_TRACE, STEP_SPAN)]
    assert review.links == ()


def test_an_unfinished_snapshot_or_a_tombstone_is_not_exported() -> None:
    import orjson

    events = review_events()[:-1]
    assert spans_of_snapshot(orjson.dumps(fold(events)["e-1"])) is None
    assert spans_of_snapshot(None) is None and spans_of_snapshot(b"not json") is None
    assert spans_of_snapshot(orjson.dumps(fold(review_events())["e-1"])) is not None


def _database(tmp_path: Path, snapshots: list[dict[str, Any]], name: str = "axmon.db") -> Path:
    path = tmp_path / name
    conn = open_for_writing(path)
    conn.execute("BEGIN")
    write_executions(conn, snapshots)
    conn.execute("COMMIT")
    conn.close()
    return path


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(events=lifecycle_scenarios())
def test_spans_from_the_database_equal_spans_from_the_published_snapshot(tmp_path_factory: pytest.TempPathFactory,
                                                                         events: list[LifecycleEvent]) -> None:
    snapshots = fold(events)
    db = _database(tmp_path_factory.mktemp("db"), list(snapshots.values()))
    with Monitor(db) as monitor:
        rows = monitor.get_finished_executions(limit=10_000)
        steps = monitor.get_steps_of([r["id"] for r in rows])
    assert {r["id"] for r in rows} == {k for k, s in snapshots.items() if s["status"] in ("completed", "failed", "cancelled")}
    for row in rows:
        live = execution_spans(snapshots[row["id"]], snapshots[row["id"]]["steps"])
        stored = execution_spans(row, steps[row["id"]])
        assert {s.span_id: s for s in stored} == {s.span_id: s for s in live}


def test_a_database_written_before_migrations_4_and_5_is_migrated_and_exports(tmp_path: Path) -> None:
    """The database is made by the previous release's db.py (schema 3, from git), rows included."""
    import subprocess

    source = subprocess.run(["git", "show", "29fe082:processor/store/db.py"], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).parents[2]).stdout
    old = types.ModuleType("old_db")
    exec(compile(source, "old_db.py", "exec"), old.__dict__)  # noqa: S102 - our own file at an older commit
    assert old.SCHEMA_VERSION == 3
    path = tmp_path / "old.db"
    conn = old.open_for_writing(path)
    conn.execute(f"INSERT INTO workflow_executions_monitor({', '.join(old.EXECUTION_COLUMNS)}) VALUES "
                 f"({', '.join('?' * len(old.EXECUTION_COLUMNS))})",
                 ("e-old", "wf", "Old", "t", "u", "completed", 1_000, 3_000, 2_000, 1, 1, 0, "k", None, "{}", 5, 0.5, 3_000))
    conn.execute(f"INSERT INTO workflow_step_executions({', '.join(old.STEP_COLUMNS)}) VALUES "
                 f"({', '.join('?' * len(old.STEP_COLUMNS))})",
                 ("s-old", "e-old", "k", "K", "completed", 1_000, 2_000, 1_000, 1, None, None, None, 5, 0.5))
    conn.close()

    conn = open_for_writing(path)  # migrates
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 5
    assert conn.execute("SELECT count(*) FROM logs").fetchone()[0] == 0  # migration 5 too
    conn.execute("BEGIN")
    write_executions(conn, [fold(review_events(traced=True))["e-1"]])
    conn.execute("COMMIT")
    conn.close()
    with Monitor(path) as monitor:
        rows = {r["id"]: r for r in monitor.get_finished_executions()}
        steps = monitor.get_steps_of(list(rows))
    assert (rows["e-old"]["trace_id"], rows["e-old"]["span_id"], rows["e-old"]["tokens_used"]) == (None, None, 5)
    assert steps["e-old"][0]["retried_at"] is None and steps["e-old"][0]["retry_count"] == 1
    assert (rows["e-1"]["trace_id"], rows["e-1"]["span_id"]) == (ENGINE_TRACE, ENGINE_SPAN)
    old_root, old_step = execution_spans(rows["e-old"], steps["e-old"])
    assert old_root.trace_id == derived_trace_id("e-old") and old_step.events == ()  # no retry times before 4


def _tree_of_database(db: Path) -> dict[bytes, tuple[dict[str, Any], set[bytes]]]:
    """Root span id -> (the execution row, the span ids its steps must have), from SQLite."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        executions = [dict(r) for r in conn.execute(
            "SELECT * FROM workflow_executions_monitor WHERE status IN ('completed', 'failed', 'cancelled')")]
        steps = [dict(r) for r in conn.execute("SELECT * FROM workflow_step_executions")]
    return {
        execution_span_id(e["id"]): (e, {step_span_id(e["id"], s["id"]) for s in steps if s["execution_id"] == e["id"]})
        for e in executions
    }


def assert_trees_equal_database(received: dict[bytes, Any], db: Path) -> None:
    """The received spans are exactly the finished executions of ``db``, each a root whose
    children are its steps, with the row's values on them."""
    tree = _tree_of_database(db)
    roots = {sid: s for sid, s in received.items() if sid in tree}
    assert set(roots) == set(tree)
    children: dict[bytes, set[bytes]] = {sid: set() for sid in tree}
    for span in received.values():
        if span.span_id not in tree:
            children[span.parent_span_id].add(span.span_id)
            assert span.trace_id == roots[span.parent_span_id].trace_id
    for sid, (row, step_ids) in tree.items():
        assert children[sid] == step_ids, row["id"]
        a = attributes(roots[sid])
        assert (a["axmon.execution.id"], a["axmon.execution.status"]) == (row["id"], row["status"])
        assert a.get("axmon.usage.total_tokens") == row["tokens_used"] and a.get("axmon.usage.cost") == row["cost"]
        assert roots[sid].start_time_unix_nano == row["started_at"] * 10**6
        assert roots[sid].end_time_unix_nano == row["completed_at"] * 10**6
        assert (roots[sid].status.code == 2) == (row["status"] == "failed")
        want_trace = bytes.fromhex(row["trace_id"]) if row["trace_id"] else derived_trace_id(row["id"])
        assert roots[sid].trace_id == want_trace


def test_export_sends_the_database_to_a_real_receiver_and_a_reexport_is_the_same(tmp_path: Path) -> None:
    snapshots = list(fold(review_events()).values()) + [fold(review_events(traced=True, e="e-2"))["e-2"]]
    for n in range(30):  # more than a page
        clock = iter(range(5_000 + n * 100, 10**7))
        f = EventFactory(clock=lambda: next(clock), trace_context=lambda: None)
        events = [f.start_execution("wf", "Bulk", "t", "u", 1, execution_id=f"b-{n}"),
                  f.start_step(f"b-{n}", "only", "Only", step_id=f"s-{n}"),
                  f.step_event("step.completed", f"s-{n}", tokens_used=n),
                  f.end_execution("execution.completed", f"b-{n}")]
        snapshots.append(fold(events)[f"b-{n}"])
    snapshots.append(fold(review_events(e="run")[:3])["run"])  # not finished: not exported
    db = _database(tmp_path, snapshots)
    with otlp_receiver() as (url, received):
        received.fail_next = 1  # a busy collector first: retried

        async def run() -> Any:
            async with OtlpClient(url, headers={"X-Api-Key": "k"}) as client:
                return await export_database(db, client, page=8)

        counts = asyncio.run(run())
        assert (counts.executions, counts.requests, received.refused) == (32, 4, 1)
        first = received.by_id()
        assert len(received.spans) == len(first) == counts.spans == 32 + 4 + 30
        assert received.headers[0]["X-Api-Key"] == "k" and received.resources[0] == {"service.name": "axmon"}
        assert_trees_equal_database(first, db)

        assert main(["traces", "export", "--otlp", url, "--db", str(db), "--service-name", "engine-x"]) == 0
        again = {s.span_id: s for s in received.spans[counts.spans:]}
        assert {k: v.SerializeToString() for k, v in again.items()} == {k: v.SerializeToString() for k, v in first.items()}
        assert received.resources[-1] == {"service.name": "engine-x"}
        assert main(["traces", "export", "--otlp", url, "--db", str(db), "--since", "7000"]) == 0
        assert len(received.spans) == 2 * counts.spans + 2 * 10 # b-20 .. b-29 ended at or after 7000


def test_a_refused_batch_is_an_error_that_says_so() -> None:
    with otlp_receiver() as (url, received):
        async def run() -> None:
            async with OtlpClient(url + "/elsewhere") as client:
                await client.send_with_retry(b"")

        with pytest.raises(ExportError, match="answered 404") as info:
            asyncio.run(run())
        assert not info.value.retriable
    assert traces_url("http://h:4318") == "http://h:4318/v1/traces"
    assert traces_url("https://h/otlp/v1/traces") == "https://h/otlp/v1/traces"
    assert main(["traces", "export", "--otlp", "ftp://x", "--db", "/nonexistent.db"]) == 1
