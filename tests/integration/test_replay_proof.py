"""The proof, in the test suite: live processing under SIGKILLs of the worker and the sink (each
landing mid-stream, checked) and a broker restart that the running worker lives through (no
stall, no restart of its own) equals a replay from the earliest offset, table by table, row by row.

It runs on a broker of its own (the local jar broker in a temporary directory), because it
restarts it."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.ops import localbroker
from processor.ops.proof import ProofOptions, run_proof
from processor.settings import Settings
from tests.integration.conftest import started_own_broker

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    yield from started_own_broker(tmp_path_factory, "proof-kafka")


def test_live_equals_replay_under_crashes(own_broker: tuple[Path, str], tmp_path: Path) -> None:
    data, bootstrap = own_broker

    def restart() -> None:
        localbroker.stop(data)
        localbroker.start(data, ready_timeout=180)

    settings = Settings.load({"partitions": 3}, environ={})
    result = run_proof(settings, bootstrap, tmp_path, ProofOptions(executions=200, seed=13), restart_broker=restart, say=log.info)
    assert (result.worker_starts, result.sink_starts, result.broker_restarts) == (4, 4, 1)
    assert [who for who, _ in result.kills] == ["sink", "worker"] * 3
    assert all(waiting > 0 for _, waiting in result.kills), f"a kill landed after the work was done: {result.kills}"
    assert result.equal, "\n".join(d.describe() for d in result.diffs)
    worker_log = (tmp_path / "worker.log").read_text()
    restarts = [line for line in worker_log.splitlines() if "stalled:" in line or "starting again" in line]
    assert not restarts, "the worker restarted itself:\n" + "\n".join(restarts)
    assert result.rows["workflow_executions_monitor"] == 205  # 5 two hours late count, 5 eight hours late are dead letters
    conn = sqlite3.connect(result.live_db)
    reasons = dict(conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason").fetchall())
    conn.close()
    assert reasons.get("late", 0) >= 25  # 20 late samples, 5 late executions
    assert reasons.get("undecodable") == 3 and reasons.get("invalid_field") == 2 and reasons.get("unknown_version") == 1
    assert result.rows["logs"] >= 40  # two for every tenth execution (resends stored once); one junk log is a dead letter
    assert result.rows["performance_metrics"] > 1000 and result.rows["metric_rollups"] > 100
    assert result.rows["alerts"] > 0 and result.rows["alert_history"] > result.rows["alerts"]
