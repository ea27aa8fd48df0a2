"""``axmon health`` sees the worker itself (its heartbeats on ``<prefix>worker-status``), on the
session broker, with failures injected into a real worker process:

1. a worker whose rollup timer raises at every start (``AXMON_FAULT_CRASH=timer``) crash-loops:
   health is unhealthy and names the restarts and the error (while its lag says 0 behind);
2. a worker whose lifecycle agent raises on every event (``AXMON_FAULT_CRASH=agent``): Faust
   restarts the agent and commits past the event, so nothing waits: health says degraded with
   the error;
3. a healthy worker beats (healthy, a fresh heartbeat); stopped, or killed, while records wait
   it is reported as not running.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from producers.simulator import ScenarioConfig, generate_scenario
from schemas import Topics
from tests.integration.conftest import TEST_PARTITIONS
from tests.integration.processes import AxmonProcess, wait_until
from tests.integration.test_health import health, publish, reasons, statuses

pytestmark = pytest.mark.integration


def events(seed: int, executions: int = 10) -> list[Any]:
    now = int(time.time() * 1000)
    return generate_scenario(ScenarioConfig(seed=seed, tenants=1, executions=executions, start_ms=now - 60_000, span_ms=30_000))


def worker_args(bootstrap: str, topics: Topics) -> list[str]:
    return ["worker", "--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--partitions", str(TEST_PARTITIONS)]


def probe_args(bootstrap: str, topics: Topics, tmp_path: Path, *extra: str) -> list[str]:
    return ["--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--db", str(tmp_path / "none.db"), *extra]


def worker_details(doc: dict[str, Any]) -> list[dict[str, Any]]:
    workers: list[dict[str, Any]] = next(c for c in doc["components"] if c["name"] == "worker")["details"]["workers"]
    return workers


class Watch:
    """The last health report, for the message of a wait that timed out."""

    def __init__(self, args: list[str], proc: AxmonProcess | None = None) -> None:
        self.args, self.proc = args, proc
        self.code, self.doc = -1, {}

    def read(self) -> dict[str, Any]:
        self.code, self.doc, _ = health(*self.args)
        return self.doc

    def until(self, predicate: Any, timeout: float, what: str) -> None:
        try:
            wait_until(lambda: predicate(self.read()), timeout, interval=2.0, what=what)
        except AssertionError:
            tail = "" if self.proc is None else self.proc.tail()
            raise AssertionError(f"{what}: last report {self.doc}\n{tail}") from None


def test_a_crash_looping_worker_is_unhealthy_with_its_restarts_and_error(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    asyncio.run(publish(kafka_bootstrap, topics, events(41)))
    proc = AxmonProcess("worker", worker_args(kafka_bootstrap, topics), tmp_path, env={"AXMON_FAULT_CRASH": "timer"}).start()
    watch = Watch(probe_args(kafka_bootstrap, topics, tmp_path), proc)
    try:
        watch.until(lambda doc: "crash loop" in reasons(doc, "worker"), 240, "a crash loop reported by health")
        doc = watch.doc
        assert watch.code == 2 and doc["overall"] == "unhealthy"
        assert statuses(doc)["worker"] == "unhealthy"
        said = reasons(doc, "worker")
        assert "restarts in the last 10 min" in said and "InjectedFault: fault: the rollup timer crashes" in said
        [seen] = worker_details(doc)
        assert seen["restarts"] >= 2 and seen["last_error"]["type"] == "InjectedFault" and seen["live"]
        assert "fault: the rollup timer crashes" in proc.log.read_text() and "(restart 2)" in proc.log.read_text()
    finally:
        proc.stop()


def test_a_worker_whose_agent_fails_is_degraded_with_the_error(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    proc = AxmonProcess("worker", worker_args(kafka_bootstrap, topics), tmp_path, env={"AXMON_FAULT_CRASH": "agent"}).start()
    watch = Watch(probe_args(kafka_bootstrap, topics, tmp_path), proc)
    try:
        watch.until(lambda doc: statuses(doc)["worker"] == "healthy", 180, "the worker's first heartbeats")
        asyncio.run(publish(kafka_bootstrap, topics, events(43, executions=3)))
        watch.until(lambda doc: "InjectedFault" in reasons(doc, "worker"), 180, "the agent's error reported by health")
        doc = watch.doc
        assert statuses(doc)["worker"] == "degraded" and watch.code >= 1, doc
        assert "an error" in reasons(doc, "worker") and "fault: the lifecycle agent crashes" in reasons(doc, "worker")
        proc.check()  # the process runs on: only health can tell
    finally:
        proc.stop()


def test_a_running_worker_beats_and_a_missing_one_is_reported(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    first = events(47)
    asyncio.run(publish(kafka_bootstrap, topics, first))
    proc = AxmonProcess("worker", worker_args(kafka_bootstrap, topics), tmp_path).start()
    watch = Watch(probe_args(kafka_bootstrap, topics, tmp_path), proc)
    try:
        watch.until(lambda doc: sum(doc["lag"]["worker"].values()) == 0 and statuses(doc)["worker"] == "healthy"
                    and worker_details(doc)[0]["state"] == "running", 240, "a caught-up worker with a healthy heartbeat")
        [seen] = worker_details(watch.doc)
        assert seen["live"] and seen["seconds_since_heartbeat"] <= 30
        assert seen["restarts"] == 0 and seen["last_error"] is None
        assert "running, heartbeat" in reasons(watch.doc, "worker")
    finally:
        assert proc.stop() == 0, proc.tail()

    asyncio.run(publish(kafka_bootstrap, topics, events(53)))
    code, doc, _ = health(*probe_args(kafka_bootstrap, topics, tmp_path))
    assert code == 2 and statuses(doc)["worker"] == "unhealthy", doc
    said = reasons(doc, "worker")
    assert "not running" in said and "records wait" in said and "stopped" in said
    assert worker_details(doc)[0]["state"] == "stopped"

    again = AxmonProcess("worker-2", worker_args(kafka_bootstrap, topics), tmp_path).start()
    watch = Watch(probe_args(kafka_bootstrap, topics, tmp_path, "--heartbeat-stale", "10"), again)
    try:
        watch.until(lambda doc: sum(doc["lag"]["worker"].values()) == 0 and statuses(doc)["worker"] == "healthy", 240,
                    "the second worker caught up")
    finally:
        again.kill()  # SIGKILL: no last record, the heartbeats just stop
    asyncio.run(publish(kafka_bootstrap, topics, events(59)))
    watch.until(lambda doc: statuses(doc)["worker"] == "unhealthy", 120, "a killed worker reported as not running")
    said = reasons(watch.doc, "worker")
    assert "not running" in said and "no heartbeat for" in said, watch.doc


def test_a_stalled_worker_is_unhealthy_before_its_watchdog_restarts_it(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """The lifecycle agent hangs after 5 events (first run only): records wait, nothing is
    committed, and the heartbeat thread goes on beating with ``stalled`` until the watchdog
    restarts the process, which then catches up."""
    args = [*worker_args(kafka_bootstrap, topics), "--stall-timeout", "40"]
    proc = AxmonProcess("worker", args, tmp_path, env={"AXMON_FAULT_HANG_AFTER": "5"}).start()
    watch = Watch(probe_args(kafka_bootstrap, topics, tmp_path), proc)
    try:
        asyncio.run(publish(kafka_bootstrap, topics, events(61, executions=20)))
        watch.until(lambda doc: "stalled:" in reasons(doc, "worker"), 240, "a stalled worker reported by health")
        assert statuses(watch.doc)["worker"] == "unhealthy" and watch.code == 2
        assert "records wait and its group has committed nothing for" in reasons(watch.doc, "worker")
        [seen] = worker_details(watch.doc)
        assert seen["state"] == "stalled" and seen["waiting"] > 0 and seen["live"]
        watch.until(lambda doc: sum(doc["lag"]["worker"].values()) == 0 and "restarted" in reasons(doc, "worker"), 300,
                    "the restarted worker caught up")
        assert statuses(watch.doc)["worker"] == "degraded" and "stalled:" in reasons(watch.doc, "worker")
        assert "fault: the lifecycle agent hangs" in proc.log.read_text()
    finally:
        proc.stop()
