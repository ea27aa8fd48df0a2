"""``axmon serve`` (a real process) over a database built by the real pipeline (SDK -> worker ->
sink on the real broker): every endpoint equals the query API on the same database, a tenant's
key sees only that tenant, and an ack posted to the API moves the alert through the worker."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from processor.serve.routes import DASHBOARD_METRICS
from processor.serve.shape import camel_key
from processor.store.queries import Monitor
from producers import EventFactory
from schemas import Event, Topics
from tests.integration.cdp import Browser
from tests.integration.conftest import TEST_PARTITIONS, free_port
from tests.integration.processes import AxmonProcess, wait_until
from tests.integration.test_alerts import MIN, RULES, db_alerts
from tests.integration.test_sink import settle
from tests.integration.test_worker import publish, scenario

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ENDPOINTS = ("/v1/run", "/v1/other")  # one alert for the API's ack, one for the dashboard's
TWO_RULES = RULES + RULES.split("rules:\n", 1)[1].replace("slow-api", "slow-other").replace("/v1/run", "/v1/other")
ADMIN = "admin-key-for-the-test-0001"
TENANT_A = "tenant-a-key-for-the-test-01"


def samples(base: int, minutes: int) -> list[Event]:
    factory = EventFactory(source="test")
    return [factory.record("api.request.duration", 1500, unit="ms", labels={"endpoint": endpoint}, tenant_id="acme",
                           occurred_at=base + minute * MIN + n * 10_000)
            for endpoint in ENDPOINTS for minute in range(minutes) for n in range(4)]


@dataclass
class Served:
    url: str
    db: Path
    bootstrap: str
    topics: Topics

    def call(self, path: str, key: str | None = ADMIN, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST")
        request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=30) as res:
                return res.status, json.loads(res.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def get(self, path: str, key: str | None = ADMIN) -> Any:
        status, body = self.call(path, key)
        assert status == 200, (path, status, body)
        return body


def camel(row: dict[str, Any]) -> dict[str, Any]:
    return {camel_key(k): v for k, v in row.items()}


@pytest.fixture(scope="module")
def served(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import uuid

    from processor.runtime.admin import contract_topics, ensure_topics

    topics = Topics(f"test-{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(kafka_bootstrap, contract_topics(topics, TEST_PARTITIONS)))
    workdir = tmp_path_factory.mktemp("serve")
    db = workdir / "axmon.db"
    (workdir / "rules.yaml").write_text(TWO_RULES)
    (workdir / "keys.yaml").write_text(f"keys:\n  - key: {ADMIN}\n    admin: true\n  - key: {TENANT_A}\n    tenants: [tenant_a]\n")
    common = ["--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix, "--partitions", str(TEST_PARTITIONS)]
    fold = ["--window-ms", str(MIN), "--grace-ms", "0"]
    worker = AxmonProcess("worker", ["worker", *common, *fold, "--rules", str(workdir / "rules.yaml")], workdir)
    sink = AxmonProcess("sink", ["sink", *common, *fold, "--db", str(db), "--batch-ms", "200"], workdir)
    port = free_port()
    server = AxmonProcess("serve", ["serve", "--db", str(db), "--port", str(port), "--keys", str(workdir / "keys.yaml"),
                                    *common], workdir)
    base = (int(time.time() * 1000) // MIN - 60) * MIN  # after the scenario (2 h ago, ~10 min long): not late
    processes = [worker.start(), sink.start()]
    try:
        asyncio.run(publish(kafka_bootstrap, topics, [*scenario(seed=43, executions=60),
                                                      *samples(base, 8)]))
        wait_until(lambda: _coordinated(kafka_bootstrap, topics), 60, what="the worker's group coordinator")
        settle(kafka_bootstrap, topics, [db], processes, 300)
        wait_until(lambda: sum(a["status"] == "firing" for a in db_alerts(db)) == 2, 120, what="two alerts firing")
        processes.append(server.start())
        api = Served(f"http://127.0.0.1:{port}", db, kafka_bootstrap, topics)
        wait_until(lambda: _answers(api), 60, interval=0.5, what=f"axmon serve to answer ({server.tail()})")
        yield api
    finally:
        for proc in reversed(processes):
            proc.stop()


def _coordinated(bootstrap: str, topics: Topics) -> bool:
    """Whether the broker names a coordinator for the worker's group (a fresh broker takes a while)."""
    from processor.errors import BrokerError
    from processor.runtime.admin import group_offsets

    try:
        asyncio.run(group_offsets(bootstrap, f"{topics.prefix}worker", [topics.workflow_events]))
    except BrokerError:
        return False
    return True


def _answers(api: Served) -> bool:
    try:
        return api.call("/api/v1/health")[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize("tenant", [None, "tenant_a", "tenant_c"])
def test_executions_dashboard_and_timeline_equal_the_query_api(served: Served, tenant: str | None) -> None:
    q = f"&tenant={tenant}" if tenant else ""
    pages: list[dict[str, Any]] = []
    cursor = ""
    while True:
        body = served.get(f"/api/v1/executions?limit=7{q}{cursor}")
        pages += body["executions"]
        if body["nextCursor"] is None:
            break
        cursor = f"&cursor={body['nextCursor']}"
    dash = served.get(f"/api/v1/dashboard?quota_start=0{q}")
    with Monitor(served.db) as monitor:
        recent = monitor.get_recent_executions(1000, tenant)
        assert pages == [camel(r) for r in recent]
        assert dash["workflowStats"] == camel(monitor.get_workflow_stats(tenant))
        assert dash["activeWorkflows"] == [camel(r) for r in monitor.get_active_executions(tenant)]
        assert dash["recentAlerts"] == [camel(r) for r in monitor.get_alerts(active=True, tenant_id=tenant, limit=20)]
        usage = dash["quotaUsage"]["usage"]
        assert sum(u["executions"] for u in usage) == len(recent)
        assert sum(u["tokensUsed"] for u in usage) == sum(r["tokens_used"] or 0 for r in recent)
        # one aggregation per dashboard metric, in order: null where the last hour has no samples
        now = int(time.time() * 1000)
        present = {m for m in DASHBOARD_METRICS if monitor.get_aggregation(m, now - 3_600_000, now, tenant) is not None}
        assert [m and m["metricType"] for m in dash["performanceMetrics"]] == [
            m if m in present else None for m in DASHBOARD_METRICS]
        workflow = recent[0]["workflow_id"]
        mine = [r for r in recent if r["workflow_id"] == workflow][:100]
        timeline = served.get(f"/api/v1/workflows/{workflow}/timeline?x=1{q}")
        assert timeline["executions"] == [camel(r) for r in mine]
        durations = [r["duration"] for r in mine if r["duration"] is not None]
        assert timeline["avgDuration"] == pytest.approx(sum(durations) / len(durations))
        assert timeline["successRate"] == pytest.approx(100 * sum(r["status"] == "completed" for r in mine) / len(mine))
        assert served.get(f"/api/v1/workflows/no-such/timeline?x=1{q}")["avgDuration"] is None


def test_one_execution_steps_and_metrics_equal_the_query_api(served: Served) -> None:
    with Monitor(served.db) as monitor:
        for row in monitor.get_recent_executions(10):
            got = served.get(f"/api/v1/executions/{row['id']}")
            assert got == {**camel(row), "steps": [camel(s) for s in monitor.get_step_executions(row["id"])],
                           "logs": [camel(r) for r in monitor.get_logs(execution_id=row["id"], limit=200)]}
        types = served.get("/api/v1/metrics/types")["metricTypes"]
        assert "api.request.duration" in types
        labels = served.get("/api/v1/metrics/labels?metric_type=api.request.duration&tenant=acme")["labels"]
        assert labels["endpoint"] == sorted(ENDPOINTS)
        start, end = 0, int(time.time() * 1000) + 1
        for tenant in (None, "acme", "tenant_b"):
            q = f"&tenant={tenant}" if tenant else ""
            agg = served.get(f"/api/v1/metrics/aggregation?metric_type=api.request.duration&start={start}&end={end}{q}")
            expected = monitor.get_aggregation("api.request.duration", start, end, tenant)
            assert agg == (None if expected is None else camel(expected))
            series = served.get(f"/api/v1/metrics/series?metric_type=api.request.duration&start={start}&end={end}"
                                f"&interval_ms=3600000{q}")
            want = monitor.get_time_series("api.request.duration", start, end, 3_600_000, None, tenant)
            assert series["dataPoints"] == [camel(p) for p in want["data_points"]]


def test_a_tenant_key_sees_only_its_tenant(served: Served) -> None:
    rows = served.get("/api/v1/executions?limit=500", TENANT_A)["executions"]
    assert rows and {r["tenantId"] for r in rows} == {"tenant_a"}
    assert served.call("/api/v1/executions?tenant=tenant_b", TENANT_A)[0] == 403
    assert served.call("/api/v1/executions", None)[0] == 401
    other = served.get("/api/v1/executions?tenant=tenant_b&limit=1")["executions"][0]
    assert served.call(f"/api/v1/executions/{other['id']}", TENANT_A)[0] == 404
    assert served.get("/api/v1/alerts", TENANT_A)["alerts"] == []  # the alert is acme's


def test_an_ack_posted_to_the_api_moves_the_alert(served: Served) -> None:
    firing = [a for a in served.get("/api/v1/alerts?status=firing")["alerts"] if a["labels"] == {"endpoint": "/v1/run"}]
    assert firing and firing[0]["tenantId"] == "acme"
    alert_id = firing[0]["id"]
    assert served.call(f"/api/v1/alerts/{alert_id}/ack", TENANT_A, {"by": "x"})[0] == 404
    status, body = served.call(f"/api/v1/alerts/{alert_id}/ack", ADMIN, {"by": "oncall"})
    assert status == 200, body
    wait_until(lambda: served.get(f"/api/v1/alerts/{alert_id}")["status"] == "acknowledged", 60, what="the ack applied")
    assert served.get(f"/api/v1/alerts/{alert_id}")["acknowledgedBy"] == "oncall"
    status, body = served.call(f"/api/v1/alerts/{alert_id}/ack", ADMIN, {"by": "again"})
    assert status == 409 and body["code"] == "not_ackable"


def test_the_stream_sends_a_new_execution_and_resumes_after_last_event_id(served: Served) -> None:
    def open_stream(last: str | None = None) -> Any:
        request = urllib.request.Request(served.url + "/api/v1/stream", headers={"Authorization": f"Bearer {TENANT_A}"})
        if last is not None:
            request.add_header("Last-Event-ID", last)
        res = urllib.request.urlopen(request, timeout=60)
        assert res.headers["Content-Type"].startswith("text/event-stream")
        assert res.readline() == b"retry: 2000\n"
        return res

    def events_until(res: Any, execution_id: str) -> list[tuple[str, dict[str, Any]]]:
        seen: list[tuple[str, dict[str, Any]]] = []
        ident, deadline = "", time.monotonic() + 120
        while time.monotonic() < deadline:
            line = res.readline().decode().rstrip("\n")
            if line.startswith("id: "):
                ident = line[4:]
            elif line.startswith("data: "):
                row = json.loads(line[6:])
                seen.append((ident, row))
                if row.get("id") == execution_id:
                    return seen
        raise AssertionError(f"no event for {execution_id} in {seen}")

    stream = open_stream()
    factory = EventFactory(source="test")
    first = factory.start_execution("wf-stream", "Streamed", "tenant_a", "u", 2)
    hidden = factory.start_execution("wf-stream", "Streamed", "tenant_b", "u", 2)
    asyncio.run(publish(served.bootstrap, served.topics, [hidden, first]))
    seen = events_until(stream, first.execution_id)
    stream.close()
    assert {row["tenantId"] for _, row in seen} == {"tenant_a"}  # tenant_b's change is not sent to this key
    last_id = seen[-1][0]
    second = factory.start_execution("wf-stream", "Streamed", "tenant_a", "u", 2)
    asyncio.run(publish(served.bootstrap, served.topics, [second]))
    with Monitor(served.db) as monitor:
        wait_until(lambda: monitor.get_execution(second.execution_id) is not None, 60, what="the second execution written")
    resumed = events_until(open_stream(str(int(last_id) - 1)), second.execution_id)  # reconnect: the last one again, then on
    assert resumed[0] == seen[-1] and int(resumed[-1][0]) > int(last_id)


async def test_the_dashboard_in_chromium(served: Served) -> None:
    """Loads with no console error, lists the active executions, shows a new one without a
    reload from the stream (not a poll), draws p50/p95/p99 lines over the last 24 hours, pauses
    and on resume gets what it missed, draws one bar per step of an execution, its ack button
    moves an alert, and falls back to polling when the stream keeps failing."""
    with Monitor(served.db) as monitor:
        active = monitor.get_active_executions()
        known = next(e for e in monitor.get_recent_executions(100) if monitor.get_step_executions(e["id"]))
        steps = monitor.get_step_executions(known["id"])
    other = next(a for a in served.get("/api/v1/alerts?status=firing")["alerts"] if a["labels"] == {"endpoint": "/v1/other"})
    async with Browser() as browser:
        await browser.goto(served.url + "/static/style.css")  # the origin, without the app: give it the key
        await browser.wait_for("document.readyState === 'complete'", what="the origin")
        await browser.eval(f"localStorage.setItem('axmon.key', '{ADMIN}'); true")
        await browser.goto(served.url + "/")
        shown = f"document.querySelectorAll('#active tbody tr').length === {len(active)}"
        await browser.wait_for(shown, what=f"{len(active)} active executions")
        assert await browser.eval("document.querySelector('#health').textContent.startsWith('health: ')")

        await browser.wait_for("window.axmon?.mode === 'stream'", what="the page's EventSource to connect")
        factory = EventFactory(source="test")
        fresh = factory.start_execution("wf-live", "Live workflow", "tenant_a", "u", 3)
        await publish(served.bootstrap, served.topics, [fresh])
        row = f"document.querySelector('#active tr[data-id=\"{fresh.execution_id}\"]')"
        await browser.wait_for(f"!!{row}", 120, what="the new execution in the live list")
        # delivered by the stream: the row is the event's, the EventSource is open, no poll ran
        assert await browser.eval(f"[{row}.dataset.via, axmon.mode, axmon.source.readyState, axmon.polls]") == ["stream", "stream", 1, 0]
        await browser.wait_for("['p50', 'p95', 'p99'].every(p => /^M[0-9.]+,[0-9.]+/.test("
                               "document.querySelector('#charts svg path.line.' + p)?.getAttribute('d') || ''))",
                               what="a p50/p95/p99 line each over the last 24 hours")
        assert await browser.eval("document.querySelectorAll('#charts .chart[data-chart=\"p50 p95 p99\"] table tbody tr').length") > 0
        await browser.screenshot(ARTIFACTS / "dashboard-1280.png")

        # paused: the stream is closed and nothing moves; resumed: the page asks for what it missed (last_event_id)
        await browser.eval("document.querySelector('#pause').click(); true")
        assert await browser.eval("[axmon.mode, axmon.source]") == ["paused", None]
        missed = factory.start_execution("wf-live", "Live workflow", "tenant_a", "u", 3)
        await publish(served.bootstrap, served.topics, [missed])
        with Monitor(served.db) as monitor:
            wait_until(lambda: monitor.get_execution(missed.execution_id) is not None, 60, what="the missed execution written")
        await asyncio.sleep(2.5)  # the server's journal has it (it diffs the database every second)
        missed_row = f"document.querySelector('#active tr[data-id=\"{missed.execution_id}\"]')"
        assert await browser.eval(f"!{missed_row}")
        await browser.eval("document.querySelector('#pause').click(); true")
        await browser.wait_for(f"!!{missed_row}", 30, what="the execution missed while paused, after resuming")
        assert await browser.eval(f"[{missed_row}.dataset.via, axmon.mode, axmon.polls]") == ["stream", "stream", 0]

        await browser.wait_for(f"!!document.querySelector('#alerts tr[data-id=\"{other['id']}\"] button.ack')", what="the ack button")
        await browser.eval(f"window.alert = () => {{}}; document.querySelector('#alerts tr[data-id=\"{other['id']}\"] button.ack').click(); true")
        await browser.wait_for(f"!document.querySelector('#alerts tr[data-id=\"{other['id']}\"]')", 120,
                               what="the acknowledged alert to leave the firing list")
        assert served.get(f"/api/v1/alerts/{other['id']}")["status"] == "acknowledged"

        await browser.goto(f"{served.url}/#/execution/{known['id']}")
        await browser.wait_for(f"document.querySelectorAll('#timeline .bar').length === {len(steps)}", what="one bar per step")
        bars = await browser.eval("[...document.querySelectorAll('#timeline .bar')].map(b => b.dataset.step)")
        assert bars == [s["id"] for s in steps]
        await browser.screenshot(ARTIFACTS / "execution-1280.png")
        await browser.resize(390, 844)
        await browser.goto(served.url + "/")
        await browser.wait_for("document.querySelectorAll('#active tbody tr').length > 0", what="the phone-width page")
        await browser.screenshot(ARTIFACTS / "dashboard-phone.png")
        assert browser.errors == []

        # a stream that keeps failing: the page polls, and says so
        await browser.resize(1280, 900)
        await browser.send("Page.addScriptToEvaluateOnNewDocument", source="window.EventSource = class { constructor() { "
                           "setTimeout(() => this.onerror && this.onerror(new Event('error')), 10); } close() {} addEventListener() {} };")
        await browser.goto(served.url + "/")
        await browser.wait_for("window.axmon?.mode === 'polling' && axmon.polls > 0", 30, what="the polling fallback")
        assert await browser.eval("document.querySelector('#live').textContent") == "polling every 3 s"
        assert browser.errors == []
