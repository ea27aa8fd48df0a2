"""The Prometheus endpoints of the real worker, sink, notifier and ``axmon serve`` on the real
broker: their counters equal what went through Kafka, every scrape passes ``promtool check
metrics``, and the sink's and serve's scrapes show the worker group's lag growing while the
worker is stopped."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from processor.errors import BrokerError
from processor.ops.settle import Backlog, settled
from processor.runtime.admin import end_offsets
from processor.runtime.metrics_export import DEFINITIONS
from schemas import Topics
from tests.integration.conftest import TEST_PARTITIONS
from tests.integration.processes import AxmonProcess, wait_until
from tests.integration.test_notify import Webhooks, produce, transitions
from tests.integration.test_sink import sink
from tests.integration.test_worker import publish, scenario, worker

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def scrape(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text: str = response.read().decode()
    return text


def samples(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and wanted <= ls)


def promtool_check(text: str, what: str) -> None:
    """``promtool check metrics``; without promtool the test fails (scripts/ensure-promtool.sh)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/ensure-promtool.sh (make test-deps)"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"metrics-{'-'.join(what.replace('(', '').replace(')', '').split())}.txt").write_text(text)
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert result.returncode == 0, f"promtool on the {what}'s scrape: {result.stdout.decode()}{result.stderr.decode()}"


def ends(bootstrap: str, topic: str) -> int:
    return sum(asyncio.run(end_offsets(bootstrap, topic)).values())


def settle(bootstrap: str, topics: Topics, db: Path, procs: list[AxmonProcess], timeout: float) -> None:
    """Wait until the worker has committed its input and the database holds every record of the
    sink's topics, twice in a row (a fresh broker's group coordinator may not answer at first)."""
    previous: list[Backlog | None] = [None]

    def done() -> bool:
        for proc in procs:
            proc.check()
        try:
            ok, previous[0] = asyncio.run(settled(bootstrap, topics, db, previous[0]))
        except BrokerError:
            return False
        return ok

    wait_until(done, timeout, interval=1.0, what=f"the pipeline to catch up (last backlog {previous[0]})")


def eventually(port: int, check: Callable[[Samples], bool], timeout: float, what: str) -> Samples:
    last: list[Samples] = [{}]

    def done() -> bool:
        last[0] = samples(scrape(port))
        return check(last[0])

    try:
        wait_until(done, timeout, interval=0.5, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last scrape: {sorted(last[0].items())}") from None
    return last[0]


def test_scrapes_match_kafka_and_show_lag_while_the_worker_is_stopped(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    bs = kafka_bootstrap
    events = scenario(seed=5, executions=40)
    executions = {e.execution_id for e in events if hasattr(e, "execution_id")}  # type: ignore[attr-defined]
    lifecycle = sum(1 for e in events if hasattr(e, "execution_id"))
    ports = {name: free_port() for name in ("worker", "sink", "notify", "serve")}
    hooks = Webhooks()
    db = tmp_path / "axmon.db"
    work = worker(bs, topics, tmp_path)
    work.args += ["--metrics-port", str(ports["worker"])]
    sinker = sink(bs, topics, tmp_path, db)
    sinker.args += ["--metrics-port", str(ports["sink"])]
    notifier = AxmonProcess("notify", ["notify", "--bootstrap", bs, "--topic-prefix", topics.prefix,
                                       "--webhook", hooks.url("/hook?token=secret"), "--metrics-port", str(ports["notify"])], tmp_path)
    server = AxmonProcess("serve", ["serve", "--db", str(db), "--port", str(ports["serve"]), "--bootstrap", bs,
                                    "--topic-prefix", topics.prefix], tmp_path)
    procs = [work, sinker, notifier, server]
    try:
        work.start()
        sinker.start()
        notifier.start()
        alerts = transitions(["a1", "a2"])
        produce(bs, topics.alerts, alerts)
        asyncio.run(publish(bs, topics, events))
        settle(bs, topics, db, [work, sinker, notifier], 180)
        server.start()

        t = topics
        w = eventually(ports["worker"], lambda s: value(s, "axmon_worker_records_consumed_total", topic=t.metrics) == ends(bs, t.metrics)
                       and value(s, "axmon_worker_records_produced_total", topic=t.execution_state) == ends(bs, t.execution_state),
                       30, "the worker's counters to match its topics")
        assert value(w, "axmon_worker_records_consumed_total", topic=t.workflow_events) == lifecycle == ends(bs, t.workflow_events)
        assert value(w, "axmon_worker_records_consumed_total", topic=t.stats_changes) == ends(bs, t.stats_changes) > 0
        assert value(w, "axmon_worker_records_produced_total", topic=t.stats_changes) == ends(bs, t.stats_changes)
        assert value(w, "axmon_worker_records_produced_total", topic=t.metric_rollups) == ends(bs, t.metric_rollups) > 0
        assert value(w, "axmon_worker_processing_errors_total") == 0
        assert value(w, "axmon_worker_state", state="running") == 1
        assert value(w, "axmon_worker_restarts_total") == 0
        assert value(w, "axmon_worker_batch_records_sum", agent="lifecycle") == lifecycle
        assert value(w, "axmon_worker_fold_duration_seconds_count", agent="lifecycle") == total(w, "axmon_worker_batches_total", agent="lifecycle") > 0
        assert value(w, "axmon_worker_table_entries", table="executions") > 0

        sink_topics = [t.execution_state, t.metric_rollups, t.dead_letter, t.metrics, t.alerts]
        s = eventually(ports["sink"], lambda s: all(value(s, "axmon_sink_records_consumed_total", topic=x) == ends(bs, x) for x in sink_topics)
                       and total(s, "axmon_consumer_lag_records", group=f"{t.prefix}worker") == 0
                       and value(s, "axmon_lag_poll_timestamp_seconds") > 0, 30, "the sink's counters to match its topics")
        assert value(s, "axmon_sink_transactions_total") == value(s, "axmon_sink_transaction_duration_seconds_count") > 0
        assert value(s, "axmon_sink_batch_records_sum") == sum(ends(bs, x) for x in sink_topics)
        assert value(s, "axmon_sink_rows_written_total", table="alerts") == len(alerts)
        assert value(s, "axmon_sink_seconds_since_last_write") < 120

        n = eventually(ports["notify"], lambda s: value(s, "axmon_notify_records_total") == len(alerts) and value(s, "axmon_lag_poll_timestamp_seconds") > 0
                       and total(s, "axmon_consumer_lag_records", group=f"{t.prefix}notify") == 0, 30, "the notifier's deliveries")
        assert total(n, "axmon_consumer_committed_offset", group=f"{t.prefix}notify") == len(alerts)
        assert value(n, "axmon_webhook_deliveries_total", webhook=hooks.url("/hook"), outcome="delivered") == len(alerts) == len(hooks.received)
        assert value(n, "axmon_webhook_deliveries_total", webhook=hooks.url("/hook"), outcome="failed") == 0
        assert "secret" not in scrape(ports["notify"])

        wait_until(lambda: _answers(ports["serve"]), 30, interval=0.5, what="axmon serve to answer")
        v = eventually(ports["serve"], lambda s: total(s, "axmon_consumer_lag_records", group=f"{t.prefix}worker", topic=t.workflow_events) == 0
                       and value(s, "axmon_lag_poll_timestamp_seconds") > 0, 30, "serve's lag of the worker group")
        assert total(v, "axmon_executions") == len(executions) == value(v, "axmon_db_table_rows", table="workflow_executions_monitor")
        assert len({dict(ls)["tenant"] for (name, ls) in v if name == "axmon_executions"}) == 4
        assert value(v, "axmon_db_seconds_since_last_write") < 120

        for name in ("worker", "sink", "notify", "serve"):
            promtool_check(scrape(ports[name]), name)

        # the worker stops: what is produced now waits, and the sink's and serve's scrapes show it growing
        work.stop()
        more = [e for e in scenario(seed=6, executions=6) if hasattr(e, "execution_id")]
        half = len(more) // 2
        lag = {"group": f"{t.prefix}worker", "topic": t.workflow_events}
        asyncio.run(publish(bs, topics, more[:half]))
        eventually(ports["sink"], lambda s: total(s, "axmon_consumer_lag_records", **lag) == half, 30, "the sink to show the first lag")
        asyncio.run(publish(bs, topics, more[half:]))
        grown = eventually(ports["sink"], lambda s: total(s, "axmon_consumer_lag_records", **lag) == len(more), 30, "the lag to grow")
        assert len({dict(ls)["partition"] for (name, ls) in grown if name == "axmon_consumer_lag_records"}) == TEST_PARTITIONS
        eventually(ports["serve"], lambda s: total(s, "axmon_consumer_lag_records", **lag) == len(more), 30, "serve to show the lag")
        promtool_check(scrape(ports["sink"]), "sink (worker stopped)")
    finally:
        for proc in procs:
            proc.stop()
        hooks.close()


def _answers(port: int) -> bool:
    try:
        scrape(port, "/metrics")
    except OSError:
        return False
    return True


def test_the_compose_prometheus_config_and_the_dashboard_queries_pass_promtool(tmp_path: Path) -> None:
    import json

    import yaml

    root = Path(__file__).resolve().parents[2]
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/ensure-promtool.sh (make test-deps)"
    config = subprocess.run([promtool, "check", "config", str(root / "deploy/prometheus/prometheus.yml")], capture_output=True)
    assert config.returncode == 0, config.stdout.decode() + config.stderr.decode()
    board = json.loads((root / "deploy/grafana/axmon.json").read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    assert exprs
    rules = tmp_path / "dashboard-rules.yml"  # promtool parses PromQL in recording rules
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{n}", "expr": expr} for n, expr in enumerate(exprs)]}]}))
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    known = {d.name for d in DEFINITIONS}
    for expr in exprs:
        used = {word for word in re.findall(r"axmon_[a-z_]+", expr)}
        assert all(re.sub(r"_(bucket|sum|count)$", "", name) in known for name in used), expr


def test_a_restarted_worker_shows_its_restarts_and_last_error(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    """The lifecycle agent hangs after one event (a fault of the first run only): the watchdog
    starts the worker again in place, its endpoint comes back on the same port, and the restart
    count and the time of the last error survive the restart."""
    port = free_port()
    proc = worker(kafka_bootstrap, topics, tmp_path)
    proc.args += ["--metrics-port", str(port), "--stall-timeout", "3"]
    proc.env = {"AXMON_FAULT_HANG_AFTER": "1"}
    events = [e for e in scenario(seed=8, executions=5) if hasattr(e, "execution_id")]
    proc.start()
    try:
        asyncio.run(publish(kafka_bootstrap, topics, events))

        def second_run() -> bool:
            proc.check()
            try:
                found = samples(scrape(port))
            except OSError:  # between two runs
                return False
            # the first run says "restarting" until its exec; the second one starts (re-joining the group)
            return value(found, "axmon_worker_restarts_total") == 1 and value(found, "axmon_worker_state", state="restarting") == 0

        wait_until(second_run, 60, interval=0.5, what="a scrape of the worker's second run")
        text = scrape(port)
        assert 0 < value(samples(text), "axmon_worker_last_error_timestamp_seconds") <= time.time()
        promtool_check(text, "worker restarted")
        assert "stalled:" in proc.log.read_text() and proc.starts == 1
    finally:
        proc.kill()  # the second run may still be joining the group: nothing to wait for
