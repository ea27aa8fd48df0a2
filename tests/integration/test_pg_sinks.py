"""Two sinks in one group on the real broker and a real PostgreSQL: they split the partitions,
one is killed (SIGKILL) mid-stream and started again, and the PostgreSQL database ends equal to
the SQLite database of one sink that ran undisturbed, tenant counters included."""

from __future__ import annotations

import asyncio
import math
import re
import time
from pathlib import Path

from processor.ops.settle import stored_sink_offsets
from processor.store.db import open_read_only
from processor.store.dbdiff import compare
from schemas import Topics
from tests.integration.processes import AxmonProcess, wait_until
from tests.integration.test_sink import settle
from tests.integration.test_worker import GRACE_MS, publish, scenario, worker
from tests.pg import PgServer


def sink(kafka_bootstrap: str, topics: Topics, workdir: Path, name: str, db: str | Path) -> AxmonProcess:
    return AxmonProcess(
        name,
        ["-v", "sink", "--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix, "--db", str(db),
         "--grace-ms", str(GRACE_MS), "--batch-size", "200", "--batch-ms", "200"],
        workdir,
    )


def test_two_sinks_on_postgresql_share_the_partitions_and_write_what_one_sink_writes(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, postgres: PgServer
) -> None:
    events = scenario(seed=43, executions=240)
    url = postgres.fresh()
    work = worker(kafka_bootstrap, topics, tmp_path).start()
    alone = sink(kafka_bootstrap, topics, tmp_path, "sink-sqlite", tmp_path / "alone.db").start()
    first = sink(kafka_bootstrap, topics, tmp_path, "sink-pg-1", url).start()
    second = sink(kafka_bootstrap, topics, tmp_path, "sink-pg-2", url).start()
    try:
        chunks = 4
        size = math.ceil(len(events) / chunks)
        for n in range(chunks):
            asyncio.run(publish(kafka_bootstrap, topics, events[n * size:(n + 1) * size]))
            if n == 1:  # mid-stream: the second sink dies, the first takes its partitions, then it is back
                written = sum(stored_sink_offsets(url).values())
                wait_until(lambda: sum(stored_sink_offsets(url).values()) > written, 120, interval=0.1,
                           what="the sinks to write something")
                second.kill()
                time.sleep(1.0)
                second.start()
        settle(kafka_bootstrap, topics, [tmp_path / "alone.db", url], [work, alone, first, second], 300)
        for proc in (first, second):  # each held partitions at some point
            assert re.search(r"assigned [1-9][0-9]* partitions", proc.tail(400)), proc.tail(20)
        diffs = compare(tmp_path / "alone.db", url)
        assert not diffs, "\n".join(d.describe() for d in diffs)
        conn = open_read_only(url)
        try:
            executions = conn.execute("SELECT count(*) FROM workflow_executions_monitor").fetchone()[0]
            totals = conn.execute("SELECT sum(total) FROM workflow_stats").fetchone()[0]
        finally:
            conn.close()
        assert executions == totals == len({e.execution_id for e in events if hasattr(e, "execution_id")})  # type: ignore[attr-defined]
    finally:
        for proc in (second, first, alone, work):
            proc.stop()
