"""Logs on the contract: ``log.recorded`` validated, built by the SDK, stored by the sink's
batch (a bad record becomes a dead letter), queried as the original LogQuery and shown by
``axmon logs``."""

from __future__ import annotations

import json

import orjson
import pytest

from processor.cli import main
from processor.folds.records import Origin
from processor.store.db import open_for_writing
from processor.store.queries import Monitor
from processor.store.retention import Retention, cleanup
from processor.store.sinkdb import SinkBatch, write_batch
from producers.client import route
from producers.factory import EventFactory
from schemas import Topics
from schemas.codec import encode_event, event_from_dict
from schemas.errors import InvalidEvent
from schemas.events import LOG_LEVELS, LogRecorded
from tests.pg import DbAt, DbLocation

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_levels_map_to_opentelemetry_severity_numbers() -> None:
    assert LOG_LEVELS == {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}
    record = event_from_dict({"type": "log.recorded", "version": 1, "event_id": "l1", "occurred_at": 5,
                              "level": "warn", "message": "slow"})
    assert isinstance(record, LogRecorded) and record.severity_number == 13 and record.attributes == {}
    for bad in ({"level": "WARN"}, {"level": "warning"}, {"message": None}, {"span_id": "00f067aa0ba902b7"},
                {"attributes": []}):
        with pytest.raises(InvalidEvent):
            event_from_dict({"type": "log.recorded", "version": 1, "event_id": "l1", "occurred_at": 5,
                             "level": "warn", "message": "slow", **bad})


def test_the_sdk_builds_log_records_that_know_their_execution_and_tenant() -> None:
    f = EventFactory(trace_context=lambda: None)
    started = f.start_execution("wf", "W", "tenant_a", "u", 1, execution_id="e-1")
    step = f.start_step(started.execution_id, "k", "K", step_id="s-1")
    record = f.log("error", "model timed out", step_id=step.step_id, attributes={"model": "m"}, trace_id=TRACE)
    assert (record.execution_id, record.tenant_id, record.step_id, record.trace_id) == ("e-1", "tenant_a", "s-1", TRACE)
    assert route(record, Topics()) == ("axmon.logs", b"e-1")
    loose = f.log("info", "engine started")
    assert (loose.execution_id, loose.tenant_id) == (None, None) and route(loose, Topics()) == ("axmon.logs", b"")
    with pytest.raises(InvalidEvent):
        f.log("loud", "no such level")


def _db(db: DbAt) -> tuple[DbLocation, list[LogRecorded]]:
    f = EventFactory(trace_context=lambda: None)
    records = [
        f.log("debug", "cache warm", occurred_at=1_000, tenant_id="t1"),
        f.log("info", "Step Lint started", execution_id="e-1", step_id="s-1", occurred_at=2_000, tenant_id="t1"),
        f.log("warn", "rate limited, retrying", execution_id="e-1", step_id="s-1", occurred_at=3_000,
              tenant_id="t1", attributes={"attempt": 2}),
        f.log("error", "model timed out", execution_id="e-2", occurred_at=4_000, tenant_id="t2"),
    ]
    path = db("axmon.db")
    conn = open_for_writing(path)
    batch = SinkBatch()
    for offset, r in enumerate(records):
        assert batch.add_log_input(Origin("axmon.logs", 0, offset, r.occurred_at), b"k", encode_event(r))
    assert batch.add_log_input(Origin("axmon.logs", 0, 0, 1_000), b"k", encode_event(records[0]))  # a resend
    assert not batch.add_log_input(Origin("axmon.logs", 1, 7, 9), b"k", b"{not json")
    assert not batch.add_log_input(Origin("axmon.logs", 1, 8, 9), b"k", encode_event(
        f.record("cpu.usage", 1.0, occurred_at=9)))
    assert write_batch(conn, batch) == []
    conn.close()
    return path, records


def test_the_sink_stores_log_records_once_and_dead_letters_the_rest(db: DbAt) -> None:
    path, records = _db(db)
    with Monitor(path) as monitor:
        rows = monitor.get_logs()
        assert [r["id"] for r in rows] == [r.event_id for r in records]  # oldest first, the resend once
        assert rows[2]["attributes"] == {"attempt": 2} and rows[2]["severity_number"] == 13
        assert [d["reason"] for d in monitor.get_dead_letters()] == ["wrong_topic", "undecodable"]
        assert [r["message"] for r in monitor.get_logs(min_severity=13)] == ["rate limited, retrying", "model timed out"]
        assert [r["message"] for r in monitor.get_logs(execution_id="e-1")] == ["Step Lint started", "rate limited, retrying"]
        assert [r["message"] for r in monitor.get_logs(grep="TIMED")] == ["model timed out"]
        assert [r["message"] for r in monitor.get_logs(since_ms=2_000, until_ms=4_000)] == [
            "Step Lint started", "rate limited, retrying"]
        assert [r["message"] for r in monitor.get_logs(tenant_id="t2")] == ["model timed out"]
        assert [r["message"] for r in monitor.get_logs(limit=2)] == ["rate limited, retrying", "model timed out"]
        assert [r["message"] for r in monitor.get_logs(after_seq=rows[1]["seq"])] == [
            "rate limited, retrying", "model timed out"]
        assert monitor.last_log_seq() == rows[-1]["seq"]
    conn = open_for_writing(path)
    report = cleanup(conn, 3_500 + Retention().samples_ms)
    conn.close()
    assert report.logs == 3  # kept like raw samples


def test_axmon_logs_filters_and_prints_json(db: DbAt, capsys: pytest.CaptureFixture[str]) -> None:
    path, records = _db(db)
    assert main(["logs", "--db", str(path), "--level", "warn", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["level"], r["message"], r["execution_id"]) for r in lines] == [
        ("warn", "rate limited, retrying", "e-1"), ("error", "model timed out", "e-2")]
    assert main(["logs", "--db", str(path), "--execution", "e-1", "--grep", "lint"]) == 0
    out = capsys.readouterr().out
    assert "INFO" in out and "[e-1/s-1] Step Lint started" in out and "rate limited" not in out
    assert main(["logs", "--db", str(path), "--since", "not a time"]) == 1


def test_a_log_record_round_trips_with_unknown_fields_kept() -> None:
    raw = {"type": "log.recorded", "version": 1, "event_id": "l1", "occurred_at": 5, "level": "fatal",
           "message": "out of memory", "host": "w-3"}
    record = event_from_dict(raw)
    assert record.extra == {"host": "w-3"} and orjson.loads(encode_event(record)) == {**raw, "attributes": {}}
