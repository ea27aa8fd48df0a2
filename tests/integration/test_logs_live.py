"""Logs on the real broker: the SDK and ``axmon produce`` publish ``log.recorded``, the sink
stores them (a junk record on the logs topic becomes a dead letter), ``axmon logs`` shows them,
and a replay of the topics builds the same ``logs`` and ``dead_letters`` tables."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from producers import AxmonProducer, ProducerConfig
from schemas import Topics
from tests.integration.processes import wait_until
from tests.integration.test_sink import sink

pytestmark = pytest.mark.integration


def axmon(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "processor.cli", *args], input=stdin, capture_output=True,
                          timeout=180, env={**os.environ, "COLUMNS": "200"})


def count(db: Path, table: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def test_logs_round_trip_and_replay_equals_live(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    async def publish() -> None:
        config = ProducerConfig(bootstrap=kafka_bootstrap, topics=topics, source="engine")
        async with AxmonProducer(config=config) as monitor:
            execution = await monitor.start_execution("wf", "W", "tenant_a", "alice", 1, execution_id="e-logs")
            step = await monitor.start_step(execution, "lint", "Lint", step_id="s-logs")
            await monitor.log("info", "lint started", step_id=step)
            await monitor.log("warn", "rate limited", step_id=step, attributes={"attempt": 2},
                              trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7")
            await monitor.log("debug", "engine heartbeat")
            await monitor.send_raw(topics.logs, b"e-logs", b"{not an event")
            await monitor.flush()

    asyncio.run(publish())
    lines = [
        orjson.dumps({"type": "log.recorded", "level": "error", "message": "model timed out",
                      "execution_id": "e-logs", "tenant_id": "tenant_a"}),
        orjson.dumps({"type": "log.recorded", "level": "loud", "message": "no such level"}),
    ]
    produced = axmon("produce", "-", "--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix, "--partitions", "3",
                     stdin=b"\n".join(lines) + b"\n")
    assert produced.returncode == 1 and b"published 1 event(s), 1 invalid line(s) skipped" in produced.stderr, produced.stderr

    db = tmp_path / "live.db"
    writer = sink(kafka_bootstrap, topics, tmp_path, db).start()
    try:
        wait_until(lambda: writer.alive() and count(db, "logs") >= 4 and count(db, "dead_letters") >= 1, 90, 0.5,
                   "the sink to store the logs")
    finally:
        writer.stop()
    assert (count(db, "logs"), count(db, "dead_letters")) == (4, 1)

    shown = axmon("logs", "--db", str(db), "--execution", "e-logs", "--level", "warn", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [(r["level"], r["message"], r["step_id"], r["severity_number"]) for r in rows] == [
        ("warn", "rate limited", "s-logs", 13), ("error", "model timed out", None, 17)]
    assert rows[0]["attributes"] == {"attempt": 2} and rows[0]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert rows[0]["tenant_id"] == "tenant_a" and rows[0]["source"] == "engine"
    everything = axmon("logs", "--db", str(db), "--grep", "HEARTBEAT")
    assert everything.returncode == 0 and "DEBUG engine heartbeat" in everything.stdout.decode()

    rebuilt = tmp_path / "replay.db"
    # two fold processes, spawned from `python -m processor.cli`, their shares with empty partitions
    replayed = axmon("replay", "--db", str(rebuilt), "--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix,
                     "--partitions", "3", "--workers", "2")
    assert replayed.returncode == 0, replayed.stderr
    # no worker ran here, so only the tables the sink fills from the logs topic are comparable
    assert count(rebuilt, "logs") == 4 and count(rebuilt, "dead_letters") == count(db, "dead_letters")
    with sqlite3.connect(db) as a, sqlite3.connect(rebuilt) as b:
        for table in ("logs", "dead_letters"):
            assert sorted(a.execute(f"SELECT * FROM {table}")) == sorted(b.execute(f"SELECT * FROM {table}")), table
