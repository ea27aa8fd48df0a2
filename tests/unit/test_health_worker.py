"""The worker component of ``axmon health``: the worker's heartbeats (``<prefix>worker-status``)
judged with what waits for it, pure; and the status record itself (round trip, what survives a
restart, the state the watchdog's observations give)."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.ops.health import Status, Thresholds, evaluate
from processor.ops.observations import WorkersObservation
from processor.runtime.status_reporter import ErrorRecorder, Observed, StatusReporter
from processor.runtime.worker_status import (
    HISTORY_ENV,
    History,
    LastError,
    WorkerStatus,
    decode_status,
    stall_state,
)
from schemas.jsonschema import all_schemas
from tests.unit.test_health import NOW, T, kafka, observations

WAITING = {(T.workflow_events, 0): 40}
CRASH = LastError(NOW - 20_000, "InjectedFault", "fault: the rollup timer crashes")


def status(**changes: object) -> WorkerStatus:
    base = WorkerStatus("h:7", "h", 7, "p.worker", "running", NOW - 2_000, NOW - 300_000, History(NOW - 300_000), 5.0, 60.0)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def judged(*workers: WorkerStatus, ends: dict[tuple[str, int], int] | None = None,
           thresholds: Thresholds = Thresholds()) -> tuple[Status, str, dict[str, object]]:
    report = evaluate(observations(kafka(ends=ends), workers=WorkersObservation(tuple(workers))), thresholds)
    worker = report.component("worker")
    return worker.status, " | ".join(worker.reasons), dict(worker.details)


def test_a_running_worker_with_a_fresh_heartbeat_is_healthy() -> None:
    got, reasons, details = judged(status(), ends=WAITING)
    assert got is Status.HEALTHY and "h:7: running, heartbeat 2 s ago, up 5 min" in reasons
    workers = details["workers"]
    assert isinstance(workers, list) and workers[0]["live"] is True and workers[0]["seconds_since_heartbeat"] == 2.0


def test_no_heartbeat_while_records_wait_is_unhealthy() -> None:
    got, reasons, _ = judged(ends=WAITING)
    assert got is Status.UNHEALTHY and "40 records wait" in reasons and "no worker has published a heartbeat" in reasons
    stale = status(heartbeat_at_ms=NOW - 95_000, history=History(NOW - 900_000, last_error=CRASH))
    got, reasons, _ = judged(stale, ends=WAITING)
    assert got is Status.UNHEALTHY and "no heartbeat for 1 min 35 s" in reasons and "running" in reasons
    assert "InjectedFault: fault: the rollup timer crashes" in reasons
    stopped = status(state="stopped", heartbeat_at_ms=NOW - 10_000)
    got, reasons, _ = judged(stopped, ends=WAITING)
    assert got is Status.UNHEALTHY and "stopped 10 s ago" in reasons
    # the limit is an option
    assert judged(stale, ends=WAITING, thresholds=Thresholds(heartbeat_stale_s=120))[0] is Status.DEGRADED


def test_no_worker_and_nothing_waiting_is_healthy_and_says_so() -> None:
    got, reasons, _ = judged()
    assert got is Status.HEALTHY and "none running, nothing waits" in reasons
    assert evaluate(observations(workers=WorkersObservation(topic_missing=True))).component("worker").reasons[0].endswith(
        "(p.worker-status does not exist)")


def test_a_crash_loop_is_unhealthy_with_the_error() -> None:
    history = History(NOW - 200_000, (NOW - 120_000, NOW - 60_000, NOW - 20_000), 3, CRASH)
    got, reasons, details = judged(status(state="starting", history=history, run_started_at_ms=NOW - 15_000))
    assert got is Status.UNHEALTHY
    assert "crash loop: 3 restarts in the last 10 min, the last 20 s ago" in reasons
    assert "InjectedFault: fault: the rollup timer crashes" in reasons
    workers = details["workers"]
    assert isinstance(workers, list) and workers[0]["restarts"] == 3 and workers[0]["last_error"]["type"] == "InjectedFault"
    got, reasons, _ = judged(status(state="restarting", history=history))
    assert got is Status.UNHEALTHY and "restarting (restart 3, 3 in the last 10 min) after InjectedFault" in reasons


def test_one_recent_restart_or_error_is_degraded_and_old_ones_are_forgotten() -> None:
    once = History(NOW - 900_000, (NOW - 100_000,), 1, CRASH)
    got, reasons, _ = judged(status(history=once))
    assert got is Status.DEGRADED and "restarted 1 min 40 s ago after InjectedFault" in reasons
    errored = History(NOW - 900_000, last_error=CRASH)
    assert judged(status(history=errored))[0] is Status.DEGRADED
    old = History(NOW - 9_000_000, (NOW - 7_000_000, NOW - 6_900_000), 2, dataclasses.replace(CRASH, at_ms=NOW - 6_900_000))
    got, reasons, _ = judged(status(history=old))
    assert got is Status.HEALTHY and "2 restarts" in reasons


def test_a_stalled_worker_is_unhealthy() -> None:
    got, reasons, _ = judged(status(state="stalled", waiting=40, stalled_for_s=45.0), ends=WAITING)
    assert got is Status.UNHEALTHY and "stalled: 40 records wait and its group has committed nothing for 45 s" in reasons


def test_records_it_could_not_process_are_counted() -> None:
    counters = {"lifecycle": {"applied": 90, "late": 2}, "dead_letters": {"processing_error": 3, "late": 2}}
    got, reasons, details = judged(status(counters=counters))
    assert got is Status.DEGRADED and "3 records could not be processed (dead-lettered as processing_error)" in reasons
    assert "dead letters since it started: late 2, processing_error 3" in reasons
    assert judged(status(counters={"metrics": {"processing_error": 1}}))[0] is Status.DEGRADED  # a core's own count
    got, reasons, _ = judged(status(counters={"dead_letters": {"late": 5}}))
    assert got is Status.HEALTHY and "late 5" in reasons


def test_a_gone_worker_does_not_hide_a_live_one() -> None:
    gone = status(worker="h:6", pid=6, heartbeat_at_ms=NOW - 120_000)
    got, reasons, _ = judged(status(), gone, ends=WAITING)
    assert got is Status.HEALTHY and "h:6: gone, no heartbeat for 2 min" in reasons
    sick = status(worker="h:8", pid=8, state="stalled", stalled_for_s=40.0)
    assert judged(status(), sick, ends=WAITING)[0] is Status.UNHEALTHY  # the worst live worker decides


def test_unread_status_or_unreachable_broker_is_unknown() -> None:
    report = evaluate(observations(workers=WorkersObservation(error="no answer within 5 s")))
    assert report.component("worker").status is Status.UNKNOWN and report.exit_code == 2
    assert "no answer within 5 s" in report.component("worker").reasons[0]


# -- the record ----------------------------------------------------------------------------------------

_ints = st.integers(min_value=0, max_value=2**53)
_text = st.text(max_size=50)


@given(
    state=st.sampled_from(["starting", "recovering", "running", "stalled", "restarting", "stopped"]),
    times=st.lists(_ints, max_size=25), error=st.none() | st.builds(LastError, _ints, _text, _text),
    counters=st.dictionaries(_text, st.dictionaries(_text, _ints, max_size=4), max_size=4),
    waiting=st.none() | _ints,
)
def test_a_status_round_trips(state: str, times: list[int], error: LastError | None,
                              counters: dict[str, dict[str, int]], waiting: int | None) -> None:
    history = History(5, tuple(times), len(times), error)
    record = status(state=state, history=history, counters=counters, waiting=waiting, stalled_for_s=1.5)
    assert decode_status(record.to_bytes()) == record
    assert History.from_text(history.to_text(), 0) == history


def test_a_status_follows_its_published_schema() -> None:
    schema = all_schemas()["derived/worker-status.schema.json"]
    history = History(5, (6, 7), 2, LastError(7, "InjectedFault", "boom"))
    counters = {"lifecycle": {"applied": 3}, "dead_letters": {"late": 1}}
    for record in (status(), status(state="stalled", history=history, counters=counters, waiting=4, stalled_for_s=31.5)):
        jsonschema.Draft202012Validator(schema).validate(orjson.loads(record.to_bytes()))


def test_what_is_not_a_status_decodes_to_none() -> None:
    assert decode_status(None) is None and decode_status(b"{") is None and decode_status(b"[]") is None
    bad_state = status().to_json() | {"state": "dancing"}
    assert decode_status(orjson.dumps(bad_state)) is None
    assert History.from_text("garbage", 42) == History(42) and History.from_text(None, 42) == History(42)


def test_restarts_carry_their_history_and_keep_the_newest() -> None:
    history = History(1)
    for n in range(30):
        history = history.restarted(100 + n, LastError(100 + n, "exit", f"crash {n}"))
    assert history.restarts == 30 and history.restart_times_ms == tuple(range(110, 130))
    assert history.last_error == LastError(129, "exit", "crash 29") and history.started_at_ms == 1


def test_the_watchdogs_observations_give_the_state() -> None:
    assert stall_state(started=True, busy=False, stalled_for_s=0.0, stall_timeout_s=60) == "running"
    assert stall_state(started=True, busy=False, stalled_for_s=30.0, stall_timeout_s=60) == "stalled"
    assert stall_state(started=True, busy=True, stalled_for_s=200.0, stall_timeout_s=60) == "recovering"
    assert stall_state(started=True, busy=True, stalled_for_s=300.0, stall_timeout_s=60) == "stalled"
    assert stall_state(started=False, busy=False, stalled_for_s=100.0, stall_timeout_s=60) == "starting"
    assert stall_state(started=True, busy=False, stalled_for_s=1e9, stall_timeout_s=0) == "running"  # no watchdog


def test_the_reporter_carries_a_restart_into_the_next_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """No thread, no broker: what :meth:`StatusReporter.restarting` records and hands on."""
    monkeypatch.delenv(HISTORY_ENV, raising=False)
    reporter = StatusReporter("b:9092", "p.worker-status", "p.worker", lambda: Observed("running"), stall_timeout_s=60)
    monkeypatch.setattr(reporter, "publish_now", lambda timeout_s=5.0: True)
    recorder = ErrorRecorder(reporter)
    try:
        raise ValueError("boom")
    except ValueError:
        recorder.emit(logging.LogRecord("faust", logging.ERROR, __file__, 1, "Crashed", None, sys.exc_info()))
    reporter.restarting("stopped with an error")
    seen = reporter.status()
    assert seen.state == "restarting" and seen.history.restarts == 1
    assert seen.history.last_error is not None and seen.history.last_error.type == "ValueError"
    assert seen.history.last_error.message == "boom (stopped with an error)"
    carried = History.from_text(os.environ[HISTORY_ENV], 0)
    assert carried == seen.history
    next_run = StatusReporter("b:9092", "p.worker-status", "p.worker", lambda: Observed("starting"), stall_timeout_s=60)
    assert next_run.status().history == carried and next_run.status().state == "starting"
