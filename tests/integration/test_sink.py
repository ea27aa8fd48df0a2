"""The sink on the real broker and real SQLite: killed with SIGKILL mid-stream, it ends with
the same database as a sink that ran undisturbed."""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import time
from pathlib import Path

from processor.admin import end_offsets
from processor.dbdiff import compare
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


def sink_offsets(db: Path) -> dict[tuple[str, int], int]:
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {(t, p): o for t, p, o in conn.execute("SELECT topic, partition, next_offset FROM sink_offsets")}
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def topic_ends(bootstrap: str, topics: Topics) -> dict[tuple[str, int], int]:
    async def read() -> dict[tuple[str, int], int]:
        out = {}
        for topic in (topics.execution_state, topics.metric_rollups, topics.dead_letter, topics.metrics):
            for p, o in (await end_offsets(bootstrap, topic)).items():
                if o > 0:
                    out[(topic, p)] = o
        return out

    return asyncio.run(read())


def caught_up(db: Path, ends: dict[tuple[str, int], int]) -> bool:
    stored = sink_offsets(db)
    return all(stored.get(tp, 0) >= o for tp, o in ends.items())


def test_sink_killed_mid_stream_ends_with_the_same_database(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    events = scenario(seed=31, executions=300)
    work = worker(kafka_bootstrap, topics, tmp_path).start()
    steady = sink(kafka_bootstrap, topics, tmp_path, tmp_path / "steady.db").start()
    killed = sink(kafka_bootstrap, topics, tmp_path, tmp_path / "killed.db", batch_size=100).start()
    rng = random.Random(7)
    try:
        chunks = 5
        size = math.ceil(len(events) / chunks)
        for n in range(chunks):
            asyncio.run(publish(kafka_bootstrap, topics, events[n * size:(n + 1) * size]))
            time.sleep(rng.uniform(0.5, 2.5))
            killed.kill()
            killed.start()
        assert killed.starts == chunks + 1

        def settled() -> bool:
            for proc in (work, steady, killed):
                assert proc.alive(), proc.tail()
            ends = topic_ends(kafka_bootstrap, topics)
            return caught_up(tmp_path / "steady.db", ends) and caught_up(tmp_path / "killed.db", ends) and topic_ends(kafka_bootstrap, topics) == ends

        wait_until(settled, 240, interval=3.0, what="both sinks to reach the end of every topic")
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
