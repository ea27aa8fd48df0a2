"""The HTTP API over small databases built row by row: tenant scoping of API keys (a property over
generated rows: a scoped key never sees another tenant's row on any endpoint, the live stream
included), 401s, JSON error
shapes, 422s naming the field, cursor paging, the timeline's defined division by zero, and the
refusal to bind a non-loopback address without keys."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.errors import ConfigError
from processor.serve.app import ServeConfig, create_app
from processor.serve.auth import KeyRing
from processor.serve.bind import check_bind
from processor.serve.sse import Journal, snapshot
from processor.settings import Settings
from processor.store.db import open_for_writing
from processor.store.queries import Monitor
from tests.pg import DbAt, DbLocation
from tests.unit.test_queries import (
    insert_execution,
    insert_row,
    insert_stats,
    insert_step,
)
from tests.unit.test_serve_stream import sse_over_asgi

ADMIN_KEY = "admin-key-0123456789"
TENANTS = ("acme", "beta", "gamma")


def key_of(tenants: tuple[str, ...]) -> str:
    return "key-" + "-".join(tenants) + "-0123456789abcdef"


def keys_file(path: Path, scopes: list[tuple[str, ...]]) -> Path:
    lines = ["keys:", f"  - key: {ADMIN_KEY}", "    admin: true"]
    for scope in scopes:
        lines += [f"  - key: {key_of(scope)}", f"    tenants: [{', '.join(scope)}]"]
    path.write_text("\n".join(lines) + "\n")
    return path


def insert_alert(conn: Any, id: str, tenant: str | None, *, status: str = "firing", severity: str = "warning") -> None:
    rank = ("pending", "firing", "acknowledged", "resolved").index(status)
    insert_row(conn, "alerts", {
        "id": id, "rule": "r", "kind": "threshold", "severity": severity, "status": status, "status_rank": rank,
        "tenant_id": tenant, "metric_type": "cpu.usage", "labels": "{}", "series": "s", "execution_id": None,
        "value": 1.0, "threshold": 0.5, "partition": 0, "pending_at": 1, "fired_at": 2, "acknowledged_at": None,
        "acknowledged_by": None, "resolved_at": None, "updated_at": 3, "record": "{}",
    })


def insert_sample(conn: Any, id: str, tenant: str | None, metric_type: str, ts: int, value: float) -> None:
    insert_row(conn, "performance_metrics", {"id": id, "timestamp": ts, "metric_type": metric_type, "value": value,
                                             "unit": "ms", "labels": orjson.dumps({"host": id}).decode(), "tenant_id": tenant})


Execution = tuple[str, str, str, int]  # tenant, workflow, status, started_at


def build(path: Path, executions: list[Execution], alert_tenants: list[str | None]) -> Path:
    conn = open_for_writing(path)
    conn.execute("BEGIN")
    for n, (tenant, workflow, status, started) in enumerate(executions):
        insert_execution(conn, f"e{n:03d}", tenant_id=tenant, workflow_id=workflow, status=status, started_at=started,
                         last_event_at=started, duration=100 * n if status == "completed" else None, tokens_used=n, cost=0.5)
        insert_step(conn, f"e{n:03d}:s", f"e{n:03d}", started_at=started)
    for tenant in TENANTS:
        insert_stats(conn, tenant, total=1)
    for n, tenant in enumerate(alert_tenants):
        insert_alert(conn, f"a{n:03d}", tenant)
        insert_sample(conn, f"m{n:03d}", tenant, "cpu.usage", 1_000 + n, float(n))
    conn.execute("COMMIT")
    conn.close()
    return path


async def stream_of(app: Any, db: Path, token: str, sentinel_tenant: str) -> list[tuple[str, dict[str, Any]]]:
    """The rows the stream sends a token's holder when every row of ``db`` is a change (the
    journal's baseline empty), read up to a last change of ``sentinel_tenant``'s."""
    journal = Journal(db, source=lambda path: {})
    journal.absorb({})
    journal.absorb(snapshot(db))
    journal.absorb({("execution", "sentinel"): {"id": "sentinel", "tenant_id": sentinel_tenant}})
    app.state.journal = journal
    status, frames, body = await sse_over_asgi(app, f"/api/v1/stream?token={token}&last_event_id=0",
                                               until=lambda f: any(d["id"] == "sentinel" for _, d, _ in f))
    assert status == 200, body
    return [(kind, row) for kind, row, _ in frames if row["id"] != "sentinel"]


def client(db: Path, keys: Path | None = None) -> TestClient:
    config = ServeConfig(db, Settings.load({}).topics, None if keys is None else KeyRing.load(keys), None)
    return TestClient(create_app(config), raise_server_exceptions=True)


def tenants_in(body: Any) -> Iterator[str | None]:
    """Every ``tenantId`` anywhere in a response."""
    if isinstance(body, dict):
        for k, v in body.items():
            if k == "tenantId":
                yield v
            else:
                yield from tenants_in(v)
    elif isinstance(body, list):
        for v in body:
            yield from tenants_in(v)


executions_st = st.lists(
    st.tuples(st.sampled_from(TENANTS), st.sampled_from(("wf1", "wf2")),
              st.sampled_from(("running", "completed", "failed")), st.integers(0, 5)),
    max_size=12,
)
alerts_st = st.lists(st.sampled_from((*TENANTS, None)), max_size=6)
scope_st = st.sampled_from([("acme",), ("beta",), ("acme", "gamma")])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(executions=executions_st, alert_tenants=alerts_st, scope=scope_st)
def test_a_scoped_key_never_sees_another_tenants_rows(executions: list[Execution], alert_tenants: list[str | None],
                                                      scope: tuple[str, ...]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = build(Path(tmp) / "t.db", executions, alert_tenants)
        api = client(db, keys_file(Path(tmp) / "keys.yaml", [scope]))
        headers = {"Authorization": f"Bearer {key_of(scope)}"}
        paths = ["/api/v1/dashboard", "/api/v1/executions?limit=500", "/api/v1/alerts", "/api/v1/workflows/wf1/timeline",
                 "/api/v1/metrics/types", "/api/v1/metrics/aggregation?metric_type=cpu.usage&start=0&end=9999",
                 "/api/v1/metrics/series?metric_type=cpu.usage&start=0&end=9999",
                 "/api/v1/metrics/labels?metric_type=cpu.usage"]
        asked: list[str | None] = [None, *TENANTS] if len(scope) == 1 else list(TENANTS)
        for path in paths:
            for tenant in asked:
                url = path if tenant is None else path + ("&" if "?" in path else "?") + f"tenant={tenant}"
                res = api.get(url, headers=headers)
                if tenant is not None and tenant not in scope:
                    assert res.status_code == 403 and res.json()["code"] == "forbidden_tenant", url
                    continue
                assert res.status_code == 200, (url, res.text)
                assert set(tenants_in(res.json())) <= set(scope), url
        for tenant in asked:  # the live stream, through the token a browser connects with
            res = api.post("/api/v1/stream/token" + ("" if tenant is None else f"?tenant={tenant}"), headers=headers)
            if tenant is not None and tenant not in scope:
                assert res.status_code == 403 and res.json()["code"] == "forbidden_tenant"
                continue
            assert res.status_code == 200, res.text
            allowed = set(scope) if tenant is None else {tenant}
            token = res.json()["token"]
            assert set(res.json()["tenants"]) == allowed
            got = asyncio.run(stream_of(api.app, db, token, sentinel_tenant=sorted(allowed)[0]))
            assert set(tenants_in(got)) <= allowed
            assert sorted((k, r["id"]) for k, r in got) == sorted(
                (k, r["id"]) for (k, _), r in snapshot(db).items() if r["tenant_id"] in allowed)
        assert api.get(f"/api/v1/executions?token={token}").status_code == 401  # a stream token only
        types = api.get("/api/v1/metrics/types", headers=headers, params={"tenant": scope[0]}).json()["metricTypes"]
        assert types == (["cpu.usage"] if scope[0] in alert_tenants else [])
        for n, (tenant, *_rest) in enumerate(executions):
            res = api.get(f"/api/v1/executions/e{n:03d}", headers=headers)
            assert res.status_code == (200 if tenant in scope else 404)
        for n, tenant in enumerate(alert_tenants):
            res = api.get(f"/api/v1/alerts/a{n:03d}", headers=headers)
            assert res.status_code == (200 if tenant in scope else 404)
        # the admin sees them all
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        assert len(api.get("/api/v1/executions?limit=500", headers=admin).json()["executions"]) == len(executions)
        assert len(api.get("/api/v1/alerts", headers=admin).json()["alerts"]) == len(alert_tenants)


@pytest.fixture
def db(db_at: DbAt) -> DbLocation:
    runs = [("acme", "wf1", "completed", 10), ("acme", "wf1", "failed", 10), ("acme", "wf1", "running", 30),
            ("acme", "wf2", "completed", 20), ("beta", "wf1", "completed", 15)]
    return build(db_at("t.db"), runs, ["acme", None])


def test_no_key_or_a_bad_key_is_401_as_json(db: Path, tmp_path: Path) -> None:
    api = client(db, keys_file(tmp_path / "keys.yaml", [("acme",)]))
    for headers in ({}, {"Authorization": "Bearer nope-nope-nope-nope"}, {"X-API-Key": "x"}, {"Authorization": "Basic abc"}):
        for path in ("/api/v1/executions", "/api/v1/health", "/api/v1/dashboard"):
            res = api.get(path, headers=headers)
            assert res.status_code == 401
            assert set(res.json()) == {"message", "code"} and res.json()["code"] == "unauthorized"
    assert api.get("/api/v1/health", headers={"X-API-Key": key_of(("acme",))}).status_code == 200


def test_a_key_of_several_tenants_must_name_one(db: Path, tmp_path: Path) -> None:
    api = client(db, keys_file(tmp_path / "keys.yaml", [("acme", "beta")]))
    res = api.get("/api/v1/executions", headers={"Authorization": f"Bearer {key_of(('acme', 'beta'))}"})
    assert res.status_code == 422 and res.json()["field"] == "tenant"


@pytest.mark.parametrize(("query", "field"), [
    ("/api/v1/executions?status=done", "status"),
    ("/api/v1/executions?limit=0", "limit"),
    ("/api/v1/executions?start=abc", "start"),
    ("/api/v1/executions?cursor=nonsense", "cursor"),
    ("/api/v1/alerts?severity=loud", "severity"),
    ("/api/v1/alerts?status=open", "status"),
    ("/api/v1/metrics/aggregation", "metric_type"),
    ("/api/v1/metrics/aggregation?metric_type=x&start=10&end=5", "start"),
    ("/api/v1/metrics/series?metric_type=x&interval_ms=0", "interval_ms"),
    ("/api/v1/metrics/series?metric_type=x&label=novalue", "label"),
])
def test_bad_parameters_are_422_naming_the_field(db: Path, query: str, field: str) -> None:
    res = client(db).get(query)
    assert res.status_code == 422, res.text
    body = res.json()
    assert body["code"] == "invalid_parameter" and body["field"] == field and body["message"]


def test_unknown_rows_and_paths_are_404_as_json(db: Path) -> None:
    api = client(db)
    for path in ("/api/v1/executions/nope", "/api/v1/alerts/nope", "/api/v1/nowhere"):
        res = api.get(path)
        assert res.status_code == 404 and set(res.json()) == {"message", "code"}


def test_an_ack_without_a_broker_is_503(db: Path) -> None:
    res = client(db).post("/api/v1/alerts/a000/ack", json={"by": "me"})
    assert res.status_code == 503 and res.json()["code"] == "no_broker"


def test_cursor_pages_cover_every_execution_once_in_order(db: Path) -> None:
    api = client(db)
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = api.get("/api/v1/executions", params=params).json()
        seen += body["executions"]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    with Monitor(db) as monitor:
        expected = monitor.get_recent_executions(100)
    assert [e["id"] for e in seen] == [e["id"] for e in expected]
    filtered = api.get("/api/v1/executions", params={"tenant": "acme", "status": "completed", "start": 15}).json()
    assert [e["id"] for e in filtered["executions"]] == ["e003"]


def test_the_timeline_is_the_original_with_nulls_for_no_executions(db: Path) -> None:
    api = client(db)
    body = api.get("/api/v1/workflows/wf1/timeline", params={"tenant": "acme"}).json()
    assert body["workflowId"] == "wf1" and [e["id"] for e in body["executions"]] == ["e002", "e001", "e000"]
    assert body["timeline"] == [{"timestamp": 10, "duration": 0}]
    assert body["avgDuration"] == 0 and body["successRate"] == pytest.approx(100 / 3)
    empty = api.get("/api/v1/workflows/none/timeline", params={"tenant": "acme"})
    assert empty.json() == {"workflowId": "none", "executions": [], "avgDuration": None, "successRate": None, "timeline": []}
    assert "NaN" not in empty.text


def test_the_dashboard_has_the_original_keys_in_camel_case(db: Path) -> None:
    body = client(db).get("/api/v1/dashboard", params={"tenant": "acme", "quota_start": 0}).json()
    assert {"timestamp", "workflowStats", "performanceMetrics", "activeWorkflows", "recentAlerts", "systemHealth",
            "quotaUsage"} <= set(body)
    assert {"avgDuration", "successRate", "total"} <= set(body["workflowStats"])
    assert len(body["performanceMetrics"]) == 3
    assert [e["id"] for e in body["activeWorkflows"]] == ["e002"]
    assert body["systemHealth"]["components"][0]["name"] == "database"
    usage = {(u["tenantId"], u["workflowId"]): (u["executions"], u["tokensUsed"]) for u in body["quotaUsage"]["usage"]}
    assert usage == {("acme", "wf1"): (3, 0 + 1 + 2), ("acme", "wf2"): (1, 3)}


def test_openapi_and_docs_are_served(db: Path) -> None:
    api = client(db)
    spec = api.get("/openapi.json").json()
    assert "/api/v1/dashboard" in spec["paths"] and "/api/v1/workflows/{workflow_id}/timeline" in spec["paths"]
    assert api.get("/docs").status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.invalid"])
def test_a_non_loopback_address_needs_keys(host: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="without --keys"):
        check_bind(host, None)
    check_bind(host, tmp_path / "keys.yaml")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_addresses_need_no_keys(host: str) -> None:
    check_bind(host, None)


@pytest.mark.parametrize("text", ["", "keys: []", "keys: [{key: short, admin: true}]",
                                  "keys: [{key: long-enough-key-000, tenants: []}]",
                                  "keys: [{key: long-enough-key-000, admin: true}, {key: long-enough-key-000, admin: true}]"])
def test_a_bad_keys_file_is_refused(text: str, tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        KeyRing.load(path)


def test_the_charts_are_the_query_apis_series_per_bucket_of_the_range(db_at: DbAt) -> None:
    now = int(time.time() * 1000)
    conn = open_for_writing(db_at("c.db"))
    conn.execute("BEGIN")
    durations = {"acme": [100.0, 200.0, 300.0, 4000.0], "beta": [50.0]}
    n = 0
    for tenant, values in durations.items():
        for value in values:
            status = "failed" if value == 300.0 else "completed"
            at = (now - 30 * 60_000) // 300_000 * 300_000 + 1_000 + n  # all in one 5 min bucket
            insert_execution(conn, f"x{n}", tenant_id=tenant, started_at=at, last_event_at=at, tokens_used=10, cost=0.25,
                             status=status)
            for metric, v in (("workflow.execution.count", 1.0), ("workflow.execution.duration", value)):
                insert_row(conn, "performance_metrics", {
                    "id": f"{metric}-{n}", "timestamp": at + 1, "metric_type": metric, "value": v, "unit": "ms",
                    "labels": orjson.dumps({"workflow": "wf", "status": status}).decode(), "tenant_id": tenant})
            n += 1
    conn.execute("COMMIT")
    conn.close()
    api = client(db_at("c.db"))
    body = api.get("/api/v1/charts", params={"tenant": "acme", "range": "1h"}).json()
    assert body["intervalMs"] == 300_000 and len(body["points"]) == 12 and body["end"] - body["start"] == 3_600_000
    assert body["end"] % 300_000 == 0 and body["start"] <= now < body["end"]
    busy = [p for p in body["points"] if p["executions"]]
    assert len(busy) == 1 and busy[0]["timestamp"] == (now - 30 * 60_000) // 300_000 * 300_000
    t = busy[0]["timestamp"]
    with Monitor(db_at("c.db")) as monitor:
        agg = monitor.get_aggregation("workflow.execution.duration", t, t + 300_000, "acme")
    assert agg is not None and (agg["p50"], agg["p99"]) == (200.0, 4000.0)
    assert {k: busy[0][k] for k in ("p50", "p95", "p99", "durationCount")} == {
        "p50": agg["p50"], "p95": agg["p95"], "p99": agg["p99"], "durationCount": 4}
    assert busy[0]["avgDuration"] == pytest.approx(1150.0)
    assert (busy[0]["executions"], busy[0]["tokensUsed"], busy[0]["cost"]) == (4, 40, 1.0)
    assert (busy[0]["finished"], busy[0]["completed"], busy[0]["successRate"]) == (4, 3, 75.0)
    quiet = [p for p in body["points"] if not p["executions"]]
    assert all(p["p50"] is None and p["successRate"] is None and p["tokensUsed"] == 0 for p in quiet)
    everyone = api.get("/api/v1/charts", params={"range": "1h"}).json()
    assert sum(p["executions"] for p in everyone["points"]) == 5
    for range_, count in (("24h", 24), ("7d", 28)):
        assert len(api.get("/api/v1/charts", params={"range": range_}).json()["points"]) == count
    res = api.get("/api/v1/charts", params={"range": "2h"})
    assert res.status_code == 422 and res.json()["field"] == "range"
