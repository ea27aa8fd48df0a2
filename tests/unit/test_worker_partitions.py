"""Several workers in one group: what each says it holds (its heartbeat), the partitions no live
worker holds (``axmon health``), and the state directory each claims on its machine. Pure, no
broker."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import jsonschema
import orjson
import pytest

from processor.ops.health import Status
from processor.runtime.assignment import Assignment, held_of
from processor.runtime.state_dir import LOCK_NAME, StateDirClaim, StateDirInUse
from processor.runtime.worker_status import decode_status, format_partitions, unheld_partitions
from schemas.jsonschema import all_schemas
from tests.unit.test_health import T, kafka
from tests.unit.test_health_worker import judged, status

SOURCES = (T.workflow_events, T.metrics, T.stats_changes)


class TP(NamedTuple):
    topic: str
    partition: int


def holding(*partitions: int) -> dict[str, tuple[int, ...]]:
    return {t: tuple(partitions) for t in SOURCES}


def test_held_keeps_the_source_topics_sorted_and_drops_standbys() -> None:
    assigned = [TP(T.metrics, 3), TP(T.metrics, 1), TP("p.worker-executions-changelog", 0), TP(T.workflow_events, 1)]
    assert dict(held_of(assigned, SOURCES)) == {T.metrics: (1, 3), T.workflow_events: (1,)}


async def test_an_assignment_follows_revokes_and_assigns_and_says_so() -> None:
    changes: list[int] = []
    assignment = Assignment(SOURCES, lambda: changes.append(1))
    await assignment._assigned(None, {TP(T.metrics, 0), TP(T.metrics, 2)})
    assert dict(assignment.held) == {T.metrics: (0, 2)}
    await assignment._revoked(None, {TP(T.metrics, 0)})
    assert dict(assignment.held) == {} and len(changes) == 2


def test_a_status_carries_its_partitions_and_state_dir() -> None:
    record = status(partitions=holding(0, 2), state_dir="/srv/w1")
    assert decode_status(record.to_bytes()) == record
    older = record.to_json()
    del older["partitions"], older["state_dir"]
    decoded = decode_status(orjson.dumps(older))
    assert decoded is not None and decoded.partitions is None and decoded.state_dir is None
    jsonschema.Draft202012Validator(all_schemas()["derived/worker-status.schema.json"]).validate(orjson.loads(record.to_bytes()))


def test_unheld_partitions_are_what_no_status_holds() -> None:
    a, b = status(partitions={T.metrics: (0, 1)}), status(partitions={T.metrics: (3,)})
    assert unheld_partitions([a, b], {T.metrics: 5, T.workflow_events: 2}) == {T.metrics: (2, 4), T.workflow_events: (0, 1)}
    assert unheld_partitions([a, status(partitions=None)], {T.metrics: 2}) == {}
    assert (format_partitions([5, 0, 1, 2]), format_partitions([]), format_partitions([3, 1])) == ("0-2,5", "none", "1,3")


def test_health_shows_every_worker_and_its_partitions() -> None:
    one = status(worker="h:1", pid=1, partitions=holding(0))
    two = status(worker="h:2", pid=2, partitions=holding(1))
    got, reasons, details = judged(one, two)  # kafka(): two partitions per topic
    assert got is Status.HEALTHY
    assert "h:1: running, heartbeat 2 s ago, up 5 min, partitions 0" in reasons and ", partitions 1" in reasons
    assert "all 2 partitions held by 2 live workers" in reasons
    workers = details["workers"]
    assert isinstance(workers, list) and [w["partitions"][T.metrics] for w in workers] == [[0], [1]]
    assert details["unheld_partitions"] == {}


def test_health_flags_partitions_no_live_worker_holds() -> None:
    live = status(worker="h:1", pid=1, partitions=holding(0))
    dead = status(worker="h:2", pid=2, partitions=holding(1), heartbeat_at_ms=live.heartbeat_at_ms - 120_000)
    got, reasons, details = judged(live, dead)
    assert got is Status.DEGRADED and f"partitions no live worker holds: {T.metrics} 1" in reasons
    assert details["unheld_partitions"] == {t: [1] for t in SOURCES}
    # while a live worker is still rebalancing it holds nothing for a moment: said, not judged
    moving = dataclasses.replace(live, state="recovering", partitions={})
    got, reasons, _ = judged(moving, dead)
    assert got is Status.HEALTHY and "a rebalance is under way" in reasons
    # workers that do not say what they hold are not judged by it
    assert judged(status(), dead)[0] is Status.HEALTHY


def test_health_names_the_partitions_of_a_sick_worker_too() -> None:
    _, reasons, _ = judged(status(state="stalled", stalled_for_s=40.0, partitions=holding(0, 1)), ends=None)
    assert "h:7: holds partitions 0-1" in reasons
    assert kafka().partitions[T.metrics] == 2


def test_a_state_dir_is_claimed_by_one_process_at_a_time(tmp_path: Path) -> None:
    claim = StateDirClaim(tmp_path / "w1")
    other = [sys.executable, "-c", "import sys; from pathlib import Path; from processor.runtime.state_dir import "
             "StateDirClaim; StateDirClaim(Path(sys.argv[1]))", str(tmp_path / "w1")]
    second = subprocess.run(other, capture_output=True, text=True)
    assert second.returncode != 0 and "is in use by another worker" in second.stderr and "--state-dir" in second.stderr
    with pytest.raises(StateDirInUse):  # in one process too: flock is per open file
        StateDirClaim(tmp_path / "w1")
    claim.release()
    assert subprocess.run(other).returncode == 0  # a released (or dead owner's) lock file blocks nobody
    assert (tmp_path / "w1" / LOCK_NAME).exists()
    StateDirClaim(tmp_path / "w2").release()


def test_a_second_worker_on_a_state_dir_stops_at_once_with_the_fix(tmp_path: Path) -> None:
    claim = StateDirClaim(tmp_path / "w")
    try:  # before it looks for a broker: nothing listens on port 9
        run = subprocess.run([sys.executable, "-m", "processor.cli", "worker", "--state-dir", str(tmp_path / "w"),
                              "--bootstrap", "127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    finally:
        claim.release()
    said = " ".join(run.stderr.split())  # the console wraps lines
    assert run.returncode == 1, said
    assert "is in use by another worker" in said and "--state-dir" in said
