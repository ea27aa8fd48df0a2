"""Alerting on the real broker: a metric pushed over a rule's threshold fires after ``for``,
resolves below the resolve threshold, honours the cooldown, can be acknowledged with
``axmon alerts ack``; the webhook receives each transition; the worker is killed mid-way."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from processor.cli import main
from producers import AxmonProducer, EventFactory, ProducerConfig
from schemas import Event, Topics
from tests.integration.conftest import TEST_PARTITIONS
from tests.integration.processes import AxmonProcess, wait_until

MIN = 60_000
RULES = """
rules:
  - name: slow-api
    metric_type: api.request.duration
    aggregation: avg
    operator: gt
    threshold: 1000
    window: 2m
    for: 2m
    resolve_threshold: 800
    cooldown: 5m
    severity: critical
    labels: {endpoint: /v1/run}
"""
# the average of each minute; a window of minute m closes (grace 0) when a later sample arrives,
# and is evaluated at its end, m + 1
FIRST = {0: 500, 1: 1500, 2: 1500, 3: 1500, 4: 1500, 5: 900, 6: 900}
SECOND = {7: 700, 8: 700, 9: 1500, 10: 1500, 11: 1500, 12: 1500, 13: 1500, 14: 1500, 20: 100}
THIRD = {21: 100, 22: 100}
# pending at 3, firing at 5 (held 2 min), resolved at 8 (avg 800, not above the resolve
# threshold), the breach from 10 waits out the cooldown (5 min from 8), pending at 13, firing at
# 15, acknowledged by hand, resolved at 21 (window 20 averages 100).
EXPECTED = [[("pending", 3), ("firing", 5), ("resolved", 8)], [("pending", 13), ("firing", 15), ("acknowledged", None), ("resolved", 21)]]


class Webhook:
    """A real HTTP server on 127.0.0.1 that records every POST body."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def transitions(self) -> dict[str, list[str]]:
        """Alert id -> the statuses received, duplicates (at-least-once delivery) removed."""
        out: dict[str, list[str]] = {}
        for record in self.received:
            seen = out.setdefault(record["id"], [])
            if record["status"] not in seen:
                seen.append(record["status"])
        return out


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def samples(base: int, minutes: dict[int, float]) -> list[Event]:
    factory = EventFactory(source="test")
    out: list[Event] = []
    for minute, value in minutes.items():
        for n in range(4):  # four samples of the same value each minute
            out.append(factory.record("api.request.duration", value, unit="ms", labels={"endpoint": "/v1/run"},
                                      tenant_id="acme", occurred_at=base + minute * MIN + n * 10_000))
    return out


async def publish(bootstrap: str, topics: Topics, events: list[Event]) -> None:
    async with AxmonProducer(config=ProducerConfig(bootstrap=bootstrap, topics=topics)) as producer:
        for event in events:
            await producer.publish(event)


def db_alerts(db: Path) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in conn.execute("SELECT * FROM alerts ORDER BY pending_at")]
        for row in rows:
            row["history"] = [(h[0], h[1]) for h in conn.execute(
                "SELECT status, at FROM alert_history WHERE alert_id = ? ORDER BY at, status", (row["id"],))]
        return rows
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def moves(rows: list[dict[str, Any]], base: int) -> list[list[tuple[str, int | None]]]:
    order = {"pending": 0, "firing": 1, "acknowledged": 2, "resolved": 3}
    return [
        [(s, None if s == "acknowledged" else (at - base) // MIN) for s, at in sorted(r["history"], key=lambda h: order[h[0]])]
        for r in rows
    ]


def test_threshold_alert_lifecycle_with_webhook_and_a_worker_restart(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, webhook: Webhook, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    db = tmp_path / "axmon.db"
    common = ["--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix, "--partitions", str(TEST_PARTITIONS)]
    fold = ["--window-ms", str(MIN), "--grace-ms", "0"]
    worker = AxmonProcess("worker", ["worker", *common, *fold, "--rules", str(rules)], tmp_path)
    sink = AxmonProcess("sink", ["sink", *common, *fold, "--db", str(db), "--batch-ms", "200"], tmp_path)
    notify = AxmonProcess("notify", ["notify", *common, "--webhook", webhook.url], tmp_path)
    base = (int(time.time() * 1000) // MIN - 120) * MIN  # two hours ago, on a minute
    processes = [worker.start(), sink.start(), notify.start()]
    try:
        asyncio.run(publish(kafka_bootstrap, topics, samples(base, FIRST)))
        wait_until(lambda: [m[:2] for m in moves(db_alerts(db), base)] == [[("pending", 3), ("firing", 5)]], 120,
                   what=f"the first alert firing (worker log:\n{worker.tail()})")
        worker.kill()  # SIGKILL mid-way: the alert state survives in the worker's changelog
        worker.start()
        asyncio.run(publish(kafka_bootstrap, topics, samples(base, SECOND)))
        wait_until(lambda: len(db_alerts(db)) == 2 and db_alerts(db)[1]["status"] == "firing", 120,
                   what=f"the second alert firing (db: {db_alerts(db)})")
        firing = db_alerts(db)[1]
        assert main(["alerts", "ack", firing["id"][:12], "--by", "oncall", "--db", str(db), *common]) == 0
        wait_until(lambda: db_alerts(db)[1]["status"] == "acknowledged", 60, what="the ack to reach the database")
        asyncio.run(publish(kafka_bootstrap, topics, samples(base, THIRD)))
        wait_until(lambda: moves(db_alerts(db), base) == EXPECTED, 120, what=f"the alerts to resolve: {moves(db_alerts(db), base)}")
        wait_until(lambda: list(webhook.transitions().values()) == [[s for s, _ in m] for m in EXPECTED], 60,
                   what=f"the webhook to receive every transition (got {webhook.transitions()}; notify log:\n{notify.tail()})")
        rows = db_alerts(db)
        assert [r["severity"] for r in rows] == ["critical", "critical"]
        assert rows[1]["acknowledged_by"] == "oncall" and rows[1]["status"] == "resolved"
        assert rows[0]["fired_at"] - base == 5 * MIN and rows[0]["resolved_at"] - base == 8 * MIN
        assert worker.starts == 2
        from tests.integration.test_worker import assert_conforms, latest

        assert_conforms(latest(kafka_bootstrap, topics.alerts), "alerts")

        capsys.readouterr()
        assert main(["alerts", "--json", "--db", str(db)]) == 0
        listed = json.loads(capsys.readouterr().out)["alerts"]
        assert {a["id"] for a in listed} == {r["id"] for r in rows}
        assert main(["alerts", "--active", "--json", "--db", str(db)]) == 0
        assert json.loads(capsys.readouterr().out)["alerts"] == []
        assert main(["alerts", "ack", rows[0]["id"], "--db", str(db), *common]) != 0  # resolved: refused
    finally:
        for proc in processes:
            proc.stop()


def test_a_quiet_execution_is_flagged_stale_and_cleared_by_its_next_event(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    from tests.integration.test_worker import assert_conforms, latest

    db = tmp_path / "axmon.db"
    common = ["--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix, "--partitions", str(TEST_PARTITIONS)]
    worker = AxmonProcess("worker", ["worker", *common, "--stale-after", "3s"], tmp_path)
    sink = AxmonProcess("sink", ["sink", *common, "--db", str(db), "--batch-ms", "200"], tmp_path)
    factory = EventFactory(source="engine")
    quiet = factory.start_execution("wf", "nightly", "acme", "u1", 3, execution_id="exec-quiet")
    busy = factory.start_execution("wf", "nightly", "acme", "u1", 1, execution_id="exec-done")
    processes = [worker.start(), sink.start()]
    try:
        asyncio.run(publish(kafka_bootstrap, topics, [quiet, busy, factory.end_execution("execution.completed", "exec-done")]))

        def stale() -> list[dict[str, Any]]:
            return [a for a in db_alerts(db) if a["kind"] == "stale"]

        wait_until(lambda: [(a["execution_id"], a["status"]) for a in stale()] == [("exec-quiet", "firing")], 90,
                   what=f"the stale alert (worker log:\n{worker.tail()})")
        state = latest(kafka_bootstrap, topics.execution_state)
        assert state["exec-quiet"]["stale_since"] == stale()[0]["fired_at"]
        assert "stale_since" not in state["exec-done"]
        assert_conforms(latest(kafka_bootstrap, topics.alerts), "alerts")
        assert_conforms(state, "execution-state")
        first = stale()[0]["id"]
        asyncio.run(publish(kafka_bootstrap, topics, [factory.update_execution("exec-quiet", current_step="s2")]))
        wait_until(lambda: [a["status"] for a in stale() if a["id"] == first] == ["resolved"], 60, what="the stale alert to resolve")
        # cleared in its state too (3 s later it may go stale again, as a new alert)
        cleared = latest(kafka_bootstrap, topics.execution_state)["exec-quiet"]
        assert cleared.get("stale_since") is None or cleared["stale_since"] > next(a for a in stale() if a["id"] == first)["resolved_at"]
    finally:
        for proc in processes:
            proc.stop()
