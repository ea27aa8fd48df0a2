"""``axmon health``: the pure rules (observations in, statuses out), the database probe on real
SQLite files, and the command's output and exit codes with the observations replaced."""

from __future__ import annotations

import argparse
import dataclasses
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor import cli
from processor.cli import health as cli_health
from processor.ops.health import (
    Status,
    Thresholds,
    evaluate,
    exit_code,
    format_age,
    worst,
)
from processor.ops.health_probe import groups_of, observe_database
from processor.ops.observations import (
    DatabaseObservation,
    KafkaObservation,
    Observations,
    WorkersObservation,
)
from processor.runtime.admin import contract_topics
from processor.runtime.worker_status import History, WorkerStatus
from processor.store.db import SCHEMA_VERSION, open_for_writing
from processor.store.sinkdb import SinkBatch, write_batch
from schemas.topics import Topics

T = Topics("p.")
NOW = 1_800_000_000_000
EXPECTED = tuple(s.name for s in contract_topics(T, 1))
WORKER_TOPICS = (T.workflow_events, T.metrics, T.stats_changes)
SINK_TOPICS = (T.execution_state, T.metric_rollups, T.dead_letter, T.metrics)


def kafka(
    ends: dict[tuple[str, int], int] | None = None,
    worker: dict[tuple[str, int], int] | None = None,
    sink: dict[tuple[str, int], int] | None = None,
    partitions: dict[str, int] | None = None,
) -> KafkaObservation:
    counts = {t: 2 for t in EXPECTED} if partitions is None else partitions
    if ends is None:
        ends = {(t, p): 0 for t in set(WORKER_TOPICS) | set(SINK_TOPICS) if t in counts for p in range(counts[t])}
    return KafkaObservation("b:9092", metadata_ms=3.0, partitions=counts, ends=ends,
                            committed={"p.worker": worker or {}, "p.sink": sink or {}})


def database(**changes: Any) -> DatabaseObservation:
    base = DatabaseObservation("x.db", exists=True, schema_version=SCHEMA_VERSION, quick_check=("ok",), size_bytes=8192,
                               wal_bytes=0, sink_offsets={}, last_write_ms=NOW - 1_000, last_write_source="sink_status")
    return dataclasses.replace(base, **changes)


def running_worker() -> WorkerStatus:
    return WorkerStatus("h:1", "h", 1, "p.worker", "running", NOW - 2_000, NOW - 600_000, History(NOW - 600_000), 5.0, 60.0)


def observations(k: KafkaObservation | None = None, db: DatabaseObservation | None = None,
                 workers: WorkersObservation | None = None) -> Observations:
    """A healthy worker beats unless ``workers`` says otherwise."""
    return Observations(NOW, T.prefix, EXPECTED, T.sources, groups_of(T), k or kafka(), db or database(), SCHEMA_VERSION,
                        workers or WorkersObservation((running_worker(),)))


def statuses(obs: Observations, thresholds: Thresholds = Thresholds()) -> dict[str, Status]:
    report = evaluate(obs, thresholds)
    return {c.name: c.status for c in report.components} | {"overall": report.overall}


# -- the rules ------------------------------------------------------------------------------------


def test_all_quiet_is_healthy() -> None:
    report = evaluate(observations())
    assert report.overall is Status.HEALTHY and report.exit_code == 0
    assert all(c.status is Status.HEALTHY for c in report.components)
    assert [c.name for c in report.components] == ["broker", "topics", "lag", "worker", "sink", "database"]


def test_overall_is_the_worst_and_unknown_counts_as_unhealthy() -> None:
    assert worst([Status.HEALTHY, Status.DEGRADED]) is Status.DEGRADED
    assert worst([Status.DEGRADED, Status.UNKNOWN]) is Status.UNHEALTHY
    assert worst([Status.UNHEALTHY, Status.HEALTHY]) is Status.UNHEALTHY
    assert worst([]) is Status.HEALTHY
    assert [exit_code(s) for s in Status] == [0, 1, 2, 2]


def test_an_unreachable_broker_makes_the_kafka_components_unknown_not_a_crash() -> None:
    report = evaluate(observations(KafkaObservation("b:9092", error="cannot connect to b:9092")))
    got = {c.name: c.status for c in report.components}
    assert got == {"broker": Status.UNHEALTHY, "topics": Status.UNKNOWN, "lag": Status.UNKNOWN,
                   "worker": Status.UNKNOWN, "sink": Status.UNKNOWN, "database": Status.HEALTHY}
    assert report.overall is Status.UNHEALTHY and report.exit_code == 2
    assert "cannot connect to b:9092" in report.component("broker").reasons[0]
    assert all("broker is unreachable" in r for c in report.components[1:5] for r in c.reasons)
    assert report.to_json()["lag"] == {"worker": None, "sink": None}


def test_missing_topics_are_named() -> None:
    derived_missing = {t: 2 for t in EXPECTED if t != T.dead_letter}
    report = evaluate(observations(kafka(partitions=derived_missing)))
    topics = report.component("topics")
    assert topics.status is Status.DEGRADED and T.dead_letter in topics.reasons[0]
    source_missing = {t: 2 for t in EXPECTED if t != T.metrics}
    assert statuses(observations(kafka(partitions=source_missing)))["topics"] is Status.UNHEALTHY
    none = evaluate(observations(kafka(partitions={})))
    assert none.component("topics").status is Status.UNHEALTHY
    assert "axmon worker" in none.component("topics").reasons[0]
    assert none.to_json()["lag"] == {"worker": {}, "sink": {}}


def test_differing_partition_counts_break_co_partitioning() -> None:
    counts = {t: 2 for t in EXPECTED} | {T.metrics: 3}
    topics = evaluate(observations(kafka(partitions=counts))).component("topics")
    assert topics.status is Status.UNHEALTHY and "co-partitioning" in topics.reasons[0]


def test_worker_lag_thresholds() -> None:
    ends = {(T.workflow_events, 0): 1_500, (T.workflow_events, 1): 0, (T.metrics, 0): 0}
    thresholds = Thresholds(lag_degraded=1_000, lag_unhealthy=100_000)
    assert statuses(observations(kafka(ends=ends)), thresholds)["lag"] is Status.DEGRADED
    assert statuses(observations(kafka(ends=ends, worker={(T.workflow_events, 0): 600})), thresholds)["lag"] is Status.HEALTHY
    big = {(T.workflow_events, 0): 100_001}
    report = evaluate(observations(kafka(ends=big)), thresholds)
    assert report.component("lag").status is Status.UNHEALTHY and report.exit_code == 2
    assert "100,001 records behind, above 100,000" in report.component("lag").reasons[0]
    assert report.to_json()["lag"]["worker"] == {f"{T.workflow_events}/0": 100_001}
    # exactly at the threshold is still fine
    assert statuses(observations(kafka(ends={(T.metrics, 1): 1_000})), thresholds)["lag"] is Status.HEALTHY


def test_lag_is_per_partition_and_never_negative() -> None:
    ends = {(T.workflow_events, 0): 10, (T.workflow_events, 1): 5, (T.stats_changes, 0): 3}
    committed = {(T.workflow_events, 0): 4, (T.workflow_events, 1): 7}
    report = evaluate(observations(kafka(ends=ends, worker=committed)))
    assert report.to_json()["lag"]["worker"] == {
        f"{T.stats_changes}/0": 3, f"{T.workflow_events}/0": 6, f"{T.workflow_events}/1": 0,
    }
    assert report.lag["worker"] is not None and report.lag["worker"].total == 9


def test_sink_lag_comes_from_the_database_when_it_has_one() -> None:
    ends = {(T.execution_state, 0): 50, (T.metrics, 0): 20}
    k = kafka(ends=ends, sink={(T.execution_state, 0): 10, (T.metrics, 0): 0})  # stale Kafka commits
    from_db = evaluate(observations(k, database(sink_offsets={(T.execution_state, 0): 50, (T.metrics, 0): 20})))
    sink = from_db.lag["sink"]
    assert sink is not None and sink.source == "database" and sink.total == 0
    assert from_db.component("lag").details["sink"]["source"] == "database"
    no_db = evaluate(observations(k, database(exists=False, sink_offsets=None, last_write_ms=None, last_write_source=None)))
    sink = no_db.lag["sink"]
    assert sink is not None and sink.source == "kafka" and sink.total == 60
    worker = no_db.lag["worker"]
    assert worker is not None and worker.source == "kafka"


def test_sink_is_degraded_only_when_records_wait_and_it_has_not_written() -> None:
    ends = {(T.execution_state, 0): 50}
    stale = database(last_write_ms=NOW - 301_000)
    thresholds = Thresholds(sink_stale_s=300)
    # records wait, no write for 5 min+: degraded
    report = evaluate(observations(kafka(ends=ends), stale), thresholds)
    assert report.component("sink").status is Status.DEGRADED
    assert "50 records wait" in report.component("sink").reasons[0] and "5 min" in report.component("sink").reasons[0]
    # records wait but it wrote recently: healthy, it is working on them
    assert statuses(observations(kafka(ends=ends), database(last_write_ms=NOW - 2_000)), thresholds)["sink"] is Status.HEALTHY
    # idle for days with nothing waiting: healthy
    idle = database(last_write_ms=NOW - 3 * 86_400_000, sink_offsets={(T.execution_state, 0): 50})
    report = evaluate(observations(kafka(ends=ends), idle), thresholds)
    assert report.component("sink").status is Status.HEALTHY and report.overall is Status.HEALTHY
    assert "caught up" in report.component("sink").reasons[0]
    # never written, records wait
    never = database(last_write_ms=None, last_write_source=None)
    assert statuses(observations(kafka(ends=ends), never))["sink"] is Status.DEGRADED


def test_database_rules() -> None:
    missing = evaluate(observations(db=database(exists=False, sink_offsets=None, last_write_ms=None)))
    assert missing.component("database").status is Status.DEGRADED
    corrupt = evaluate(observations(db=database(quick_check=("*** in database main ***", "Page 7: btreeInitPage() returns error code 11"))))
    assert corrupt.component("database").status is Status.UNHEALTHY and corrupt.exit_code == 2
    assert "quick_check failed" in corrupt.component("database").reasons[0]
    unreadable = evaluate(observations(db=database(error="file is not a database", quick_check=())))
    assert unreadable.component("database").status is Status.UNHEALTHY
    assert "file is not a database" in unreadable.component("database").reasons[0]
    fine = evaluate(observations()).component("database")
    assert fine.details["size_bytes"] == 8192 and fine.details["schema_version"] == SCHEMA_VERSION


def test_offsets_unreadable_after_metadata_answered() -> None:
    k = dataclasses.replace(kafka(), ends={}, committed={}, offsets_error="no answer within 5 s")
    report = evaluate(observations(k))
    got = {c.name: c.status for c in report.components}
    assert got["broker"] is Status.HEALTHY and got["lag"] is Status.UNKNOWN and got["sink"] is Status.UNKNOWN
    assert report.exit_code == 2


def test_json_document_is_stable() -> None:
    doc = evaluate(observations(kafka(ends={(T.metrics, 1): 7}))).to_json()
    assert list(doc) == ["overall", "checked_at", "bootstrap", "topic_prefix", "db_path", "components", "lag"]
    assert [c["name"] for c in doc["components"]] == ["broker", "topics", "lag", "worker", "sink", "database"]
    assert all(set(c) == {"name", "status", "reasons", "details"} for c in doc["components"])
    assert doc["lag"] == {"worker": {f"{T.metrics}/1": 7}, "sink": {f"{T.metrics}/1": 7}}
    assert orjson.loads(orjson.dumps(doc)) == doc


def test_format_age() -> None:
    assert [format_age(s) for s in (5, 60, 312, 3_720, 90_000)] == ["5 s", "1 min", "5 min 12 s", "1 h 2 min", "1 d 1 h"]


# -- the database probe on real files --------------------------------------------------------------


def test_database_probe_reads_offsets_and_the_last_write(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    conn = open_for_writing(db)
    batch = SinkBatch()
    batch.consumed(T.execution_state, 0, 42, 0)
    batch.records = 1
    write_batch(conn, batch, written_at_ms=NOW - 5_000)
    conn.close()
    seen = observe_database(db)
    assert seen.error is None and seen.quick_check == ("ok",) and seen.schema_version == SCHEMA_VERSION
    assert seen.sink_offsets == {(T.execution_state, 0): 42}
    assert (seen.last_write_ms, seen.last_write_source) == (NOW - 5_000, "sink_status")
    assert seen.size_bytes is not None and seen.size_bytes > 0


def test_database_probe_before_the_sink_recorded_its_writes(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    open_for_writing(db).close()
    raw = sqlite3.connect(db)
    raw.execute("DROP TABLE sink_status")  # as a database written by an older sink
    raw.commit()
    raw.close()
    seen = observe_database(db)
    assert seen.last_write_source == "file mtime"
    assert seen.last_write_ms is not None and abs(seen.last_write_ms - time.time() * 1000) < 60_000
    fresh = tmp_path / "fresh.db"
    open_for_writing(fresh).close()
    assert observe_database(fresh).last_write_ms is None  # the sink never wrote a batch


def test_database_probe_on_missing_garbage_and_corrupt_files(tmp_path: Path) -> None:
    assert observe_database(tmp_path / "none.db").exists is False
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 500)
    seen = observe_database(garbage)
    assert seen.exists and seen.error and "not a database" in seen.error
    corrupt = tmp_path / "corrupt.db"
    conn = open_for_writing(corrupt)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO dead_letters(topic, partition, \"offset\", reason, detail) VALUES ('t', 0, ?, 'r', ?)",
                     [(n, "x" * 200) for n in range(2_000)])
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    data = bytearray(corrupt.read_bytes())
    page = 4096
    for offset in range(page * 5, page * 12):  # scribble over some b-tree pages
        data[offset] = 0x5A
    corrupt.write_bytes(bytes(data))
    report = evaluate(observations(db=observe_database(corrupt))).component("database")
    assert report.status is Status.UNHEALTHY, report


# -- the command ------------------------------------------------------------------------------------


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], obs: Observations,
        *args: str) -> tuple[int, str, dict[str, Any]]:
    seen: dict[str, Any] = {}

    def fake(topics: Topics, bootstrap: str | None, db_path: Path, *, timeout_s: float,
             bootstrap_error: str | None) -> Observations:
        seen.update(topics=topics, bootstrap=bootstrap, db_path=db_path, timeout_s=timeout_s, error=bootstrap_error)
        return obs

    monkeypatch.setattr(cli_health, "gather", fake)
    code = cli.main(["health", "--bootstrap", "b:9092", "--topic-prefix", "p.", "--db", "x.db", *args])
    return code, capsys.readouterr().out, seen


@pytest.mark.parametrize(
    ("obs", "expected"),
    [
        (observations(), 0),
        (observations(kafka(ends={(T.workflow_events, 0): 5_000})), 1),
        (observations(db=database(exists=False, sink_offsets=None)), 1),
        (observations(kafka(ends={(T.workflow_events, 0): 500_000})), 2),
        (observations(KafkaObservation("b:9092", error="cannot connect to b:9092")), 2),
        (observations(db=database(quick_check=("row 3 missing from index",))), 2),
    ],
)
def test_exit_codes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], obs: Observations, expected: int) -> None:
    code, out, seen = run(monkeypatch, capsys, obs, "--json")
    assert code == expected
    doc = orjson.loads(out)
    assert doc["overall"] == ["healthy", "degraded", "unhealthy"][expected]
    assert seen["bootstrap"] == "b:9092" and seen["db_path"] == Path("x.db") and seen["topics"] == T


def test_human_output(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ends = {(T.workflow_events, 0): 1_234, (T.workflow_events, 1): 6, (T.execution_state, 0): 3}
    code, out, _ = run(monkeypatch, capsys, observations(kafka(ends=ends), database(sink_offsets={(T.execution_state, 0): 3})))
    assert code == 1
    assert "axmon health: degraded" in out
    for name in ("broker", "topics", "lag", "worker", "sink", "database"):
        assert name in out
    assert "worker (p.worker)" in out and "0: 1,234  1: 6" in out and "1,240" in out
    assert "sink (p.sink)" in out and "database" in out


def test_thresholds_are_options(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    obs = observations(kafka(ends={(T.workflow_events, 0): 5_000}))
    assert run(monkeypatch, capsys, obs, "--lag-degraded", "10000")[0] == 0
    assert run(monkeypatch, capsys, obs, "--lag-degraded", "10", "--lag-unhealthy", "4999")[0] == 2
    monkeypatch.setattr(cli_health, "gather", lambda *a, **k: obs)
    assert cli.main(["health", "--bootstrap", "b:9092", "--lag-degraded", "10", "--lag-unhealthy", "5"]) == 1
    assert "--lag-unhealthy" in capsys.readouterr().err  # a usage error, not a finding
    code, _, seen = run(monkeypatch, capsys, obs, "--timeout", "1.5")
    assert seen["timeout_s"] == 1.5


def test_no_broker_configured_is_a_finding(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def fake(topics: Topics, bootstrap: str | None, db_path: Path, *, timeout_s: float,
             bootstrap_error: str | None) -> Observations:
        seen.update(bootstrap=bootstrap, error=bootstrap_error)
        return observations(KafkaObservation(None, error=bootstrap_error))

    monkeypatch.delenv("AXMON_BOOTSTRAP", raising=False)
    monkeypatch.setattr(cli_health, "gather", fake)
    code = cli.main(["health", "--data-dir", str(tmp_path / "no-kafka"), "--db", str(tmp_path / "x.db")])
    assert code == 2 and seen["bootstrap"] is None and "axmon kafka start" in seen["error"]
    assert "unhealthy" in capsys.readouterr().out


def test_a_failing_probe_is_unhealthy_without_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*args: Any, **kwargs: Any) -> Observations:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_health, "gather", broken)
    assert cli.main(["health", "--bootstrap", "b:9092"]) == 2
    captured = capsys.readouterr()
    assert "boom" in captured.err and "Traceback" not in captured.err + captured.out


def test_the_parser_knows_health() -> None:
    args = cli.build_parser().parse_args(["health", "--json"])
    assert isinstance(args, argparse.Namespace) and args.handler is cli_health.cmd_health
    assert (args.lag_degraded, args.lag_unhealthy, args.sink_stale, args.timeout) == (1_000, 100_000, 300.0, 5.0)
    assert (args.heartbeat_stale, args.restart_window) == (30.0, 600.0)
