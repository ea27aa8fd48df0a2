"""The sink on the real broker and real SQLite: killed with SIGKILL mid-stream, it ends with
the same database as a sink that ran undisturbed."""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import time
from pathlib import Path

from processor.errors import BrokerError
from processor.ops.settle import Backlog, backlog, settled, stored_sink_offsets
from processor.store.dbdiff import compare
from schemas import Topics
from tests.integration.processes import AxmonProcess, wait_until
from tests.integration.test_worker import GRACE_MS, publish, scenario, worker


def sink(kafka_bootstrap: str, topics: Topics, workdir: Path, db: Path, batch_size: int = 500) -> AxmonProcess:
    return AxmonProcess(
        f"sink-{db.stem}",
        ["sink", "--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix, "--db", str(db),
         "--grace-ms", str(GRACE_MS), "--batch-size", str(batch_size), "--batch-ms", "200"],
        workdir,
    )


def settle(kafka_bootstrap: str, topics: Topics, dbs: list[Path], procs: list[AxmonProcess], timeout: float) -> None:
    """Wait until the worker has committed all its input and every database holds everything
    on the sink's topics, twice in a row."""
    previous: dict[Path, Backlog | None] = {db: None for db in dbs}

    def done() -> bool:
        for proc in procs:
            assert proc.alive(), proc.tail()
        results = []
        for db in dbs:
            try:
                ok, previous[db] = asyncio.run(settled(kafka_bootstrap, topics, db, previous[db]))
            except BrokerError:  # a broker just started has no group coordinator for a while
                ok = False
            results.append(ok)
        return all(results)

    try:
        wait_until(done, timeout, interval=2.0, what="the pipeline to catch up")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last backlog: {previous}\n" + "\n".join(p.tail(15) for p in procs)) from None


def test_sink_killed_mid_stream_ends_with_the_same_database(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    events = scenario(seed=31, executions=300)
    work = worker(kafka_bootstrap, topics, tmp_path).start()
    steady = sink(kafka_bootstrap, topics, tmp_path, tmp_path / "steady.db").start()
    killed = sink(kafka_bootstrap, topics, tmp_path, tmp_path / "killed.db", batch_size=100).start()
    rng = random.Random(7)
    try:
        chunks = 5
        size = math.ceil(len(events) / chunks)
        behind: list[int] = []
        for n in range(chunks):
            asyncio.run(publish(kafka_bootstrap, topics, events[n * size:(n + 1) * size]))
            written = sum(stored_sink_offsets(tmp_path / "killed.db").values())
            wait_until(lambda: sum(stored_sink_offsets(tmp_path / "killed.db").values()) > written, 120, interval=0.1,
                       what="the sink to write something")
            time.sleep(rng.uniform(0.0, 0.2))
            killed.kill()
            behind.append(asyncio.run(backlog(kafka_bootstrap, topics, tmp_path / "killed.db")).sink)
            killed.start()
        assert killed.starts == chunks + 1
        # A small chunk can be written whole before the kill lands (the sink is fast): most
        # kills, not each, must find records still to write.
        assert sum(1 for waiting in behind if waiting > 0) >= 3, f"too few kills landed mid-stream: {behind}"

        settle(kafka_bootstrap, topics, [tmp_path / "steady.db", tmp_path / "killed.db"], [work, steady, killed], 240)
        diffs = compare(tmp_path / "steady.db", tmp_path / "killed.db")
        assert not diffs, "\n".join(d.describe() for d in diffs)
        conn = sqlite3.connect(tmp_path / "killed.db")
        executions = conn.execute("SELECT count(*) FROM workflow_executions_monitor").fetchone()[0]
        samples = conn.execute("SELECT count(*) FROM performance_metrics").fetchone()[0]
        totals = conn.execute("SELECT sum(total) FROM workflow_stats").fetchone()[0]
        conn.close()
        assert executions == totals == len({e.execution_id for e in events if hasattr(e, "execution_id")})  # type: ignore[attr-defined]
        assert samples > 1000
    finally:
        for proc in (killed, steady, work):
            proc.stop()
