"""``axmon notify`` on the real broker, delivering to a real HTTP server on 127.0.0.1: every
alert transition reaches every webhook in order with its body and headers; failing webhooks
are retried or given up on without holding the others back; a SIGKILL loses nothing."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from processor.runtime.admin import group_lag
from schemas import Topics
from tests.integration.processes import AxmonProcess, wait_until

STATUSES = ("pending", "firing", "acknowledged", "resolved")


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def pair(self) -> tuple[str, str]:
        return self.headers["x-axmon-alert-id"], self.headers["x-axmon-alert-status"]


Rule = Callable[[Received, int], int]
"""(the request, how many times this path has seen this alert id and status, 1 the first) -> status."""


class Webhooks:
    """A real HTTP/1.1 server on 127.0.0.1 (an ephemeral port) that records every POST and
    answers each path by its rule (200 when it has none)."""

    def __init__(self) -> None:
        self.rules: dict[str, Rule] = {}
        self.delay_s = 0.0
        self.received: list[Received] = []
        self._lock = threading.Lock()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                status = hooks.answer(request)
                payload = b"" if status < 300 else b"no thanks"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhooks", daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def answer(self, request: Received) -> int:
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            seen = sum(1 for r in self.received if r.path == request.path and r.pair == request.pair) + 1
            self.received.append(request)
        rule = self.rules.get(request.path)
        return 200 if rule is None else rule(request, seen)

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhooks() -> Iterator[Webhooks]:
    hooks = Webhooks()
    yield hooks
    hooks.close()


def alert(alert_id: str, status: str, n: int) -> bytes:
    at = 1_700_000_000_000 + n * 1_000
    return orjson.dumps({
        "id": alert_id, "rule": "slow-api", "kind": "threshold", "severity": "warning", "status": status,
        "tenant_id": "t1", "metric_type": "api.request.duration", "labels": {"model": "gpt-large"},
        "series": '["t1","api.request.duration",[["model","gpt-large"]]]', "aggregation": "avg",
        "operator": "gt", "threshold": 1000, "resolve_threshold": 800, "value": 1234.5 + n,
        "pending_at": 1_700_000_000_000, "fired_at": at if status != "pending" else None,
        "acknowledged_at": at if status == "acknowledged" else None,
        "acknowledged_by": "alice" if status == "acknowledged" else None,
        "resolved_at": at if status == "resolved" else None, "at": at,
    })


def transitions(alert_ids: list[str], statuses: tuple[str, ...] = STATUSES) -> list[tuple[bytes, bytes]]:
    """Each alert through ``statuses``, the alerts interleaved: (key, value)."""
    out = []
    for step, status in enumerate(statuses):
        for alert_id in alert_ids:
            out.append((alert_id.encode(), alert(alert_id, status, step)))
    return out


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    asyncio.run(_produce(bootstrap, topic, records))


def notifier(bootstrap: str, topics: Topics, workdir: Path, urls: list[str], *extra: str) -> AxmonProcess:
    args = ["notify", "--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--progress-every", "1"]
    for url in urls:
        args += ["--webhook", url]
    return AxmonProcess("notify", [*args, *extra], workdir)


def running(proc: AxmonProcess, done: Callable[[], bool]) -> Callable[[], bool]:
    """``done``, after checking that the notifier still runs (else fail with its log)."""

    def check() -> bool:
        proc.check()
        return done()

    return check


def caught_up(bootstrap: str, topics: Topics) -> bool:
    lag = asyncio.run(group_lag(bootstrap, f"{topics.prefix}notify", [topics.alerts]))
    return bool(lag) and not any(lag.values())


def stop_and_read(proc: AxmonProcess) -> str:
    assert proc.stop() == 0, proc.tail()
    return proc.log.read_text()


def counters_of(log: str, url: str) -> tuple[int, int, int]:
    """The final counters line of ``url`` in the log: (delivered, retried, failed)."""
    found = re.findall(rf"^\s+{re.escape(url)}: (\d+) delivered, (\d+) retried, (\d+) failed$", log, re.MULTILINE)
    assert found, f"no counters for {url} in:\n{log[-3000:]}"
    delivered, retried, failed = found[-1]
    return int(delivered), int(retried), int(failed)


def test_every_transition_reaches_every_webhook_in_order(kafka_bootstrap: str, topics: Topics, webhooks: Webhooks, tmp_path: Path) -> None:
    records = transitions(["alert-a", "alert-b", "alert-c"])
    records.insert(5, (b"alert-b", b"this is not json"))
    produce(kafka_bootstrap, topics.alerts, records)  # before the notifier starts: it reads from the earliest
    expected = [(k, v) for k, v in records if v.startswith(b"{")]
    urls = [webhooks.url("/one"), webhooks.url("/two")]
    proc = notifier(kafka_bootstrap, topics, tmp_path, urls).start()
    try:
        wait_until(running(proc, lambda: all(len(webhooks.at(p)) >= len(expected) for p in ("/one", "/two"))),
                   60, 0.2, "every webhook to receive every transition")
        wait_until(lambda: caught_up(kafka_bootstrap, topics), 30, 0.5, "the notifier to commit")
    finally:
        log = stop_and_read(proc)

    for path in ("/one", "/two"):
        got = webhooks.at(path)
        assert len(got) == len(expected), [r.pair for r in got]  # no duplicates in a clean run
        for alert_id in ("alert-a", "alert-b", "alert-c"):
            mine = [r for r in got if r.pair[0] == alert_id]
            assert [r.pair[1] for r in mine] == list(STATUSES)
            assert [r.body for r in mine] == [v for k, v in expected if k == alert_id.encode()]
            for r in mine:
                assert r.headers["content-type"] == "application/json"
                assert orjson.loads(r.body)["id"] == alert_id
    assert "stopped: 12 alert transitions, 1 invalid records skipped" in log
    assert "not an alert transition" in log
    assert re.search(r"^\d+ alert transitions, \d+ invalid; ", log, re.MULTILINE), "no progress line"
    for url in urls:
        assert counters_of(log, url) == (12, 0, 0)


def test_failing_webhooks_are_retried_or_given_up_on_and_the_others_still_get_everything(
    kafka_bootstrap: str, topics: Topics, webhooks: Webhooks, tmp_path: Path
) -> None:
    records = transitions(["alert-x", "alert-y"], ("pending", "firing"))
    webhooks.rules["/flaky"] = lambda r, seen: 500 if r.pair == ("alert-x", "firing") and seen <= 2 else 200
    webhooks.rules["/reject"] = lambda r, seen: 400
    webhooks.rules["/down"] = lambda r, seen: 503
    ok, flaky, reject, down = (webhooks.url(p) for p in ("/ok", "/flaky", "/reject", "/down"))
    proc = notifier(kafka_bootstrap, topics, tmp_path, [ok, flaky, reject, down],
                    "--backoff", "0.1", "--max-backoff", "0.4", "--max-attempts", "4").start()
    try:
        produce(kafka_bootstrap, topics.alerts, records)
        wait_until(running(proc, lambda: len(webhooks.at("/down")) >= 4 * len(records)), 90, 0.2, "every attempt")
        wait_until(lambda: caught_up(kafka_bootstrap, topics), 30, 0.5, "the notifier to commit")
    finally:
        log = stop_and_read(proc)

    sent = [(k.decode(), orjson.loads(v)["status"]) for k, v in records]
    assert [r.pair for r in webhooks.at("/ok")] == sent
    flaky_pairs = [r.pair for r in webhooks.at("/flaky")]
    assert flaky_pairs.count(("alert-x", "firing")) == 3  # 500, 500, 200
    assert list(dict.fromkeys(flaky_pairs)) == sent
    assert [r.pair for r in webhooks.at("/reject")] == sent  # a 400 is never retried
    assert len(webhooks.at("/down")) == 4 * len(records)  # retried, then given up on

    assert "stopped: 4 alert transitions, 0 invalid records skipped" in log
    assert counters_of(log, ok) == (4, 0, 0)
    assert counters_of(log, flaky) == (4, 2, 0)
    assert counters_of(log, reject) == (0, 0, 4)
    assert counters_of(log, down) == (0, 12, 4)
    assert re.search(rf"webhook {re.escape(reject)}: alert alert-x \(pending\) refused, not retried: HTTP 400", log)
    assert re.search(rf"webhook {re.escape(down)}: alert alert-y \(firing\) failed 4 times .* giving up: HTTP 503", log)
    assert re.search(rf"webhook {re.escape(flaky)}: alert alert-x \(firing\) attempt 2 failed: HTTP 500", log)


def test_a_sigkill_mid_way_loses_nothing(kafka_bootstrap: str, topics: Topics, webhooks: Webhooks, tmp_path: Path) -> None:
    ids = [f"alert-{n:02d}" for n in range(10)]
    records = transitions(ids)
    webhooks.delay_s = 0.1
    url = webhooks.url("/hook")
    produce(kafka_bootstrap, topics.alerts, records)
    proc = notifier(kafka_bootstrap, topics, tmp_path, [url]).start()
    try:
        wait_until(running(proc, lambda: len(webhooks.at("/hook")) >= 10), 60, 0.05, "some deliveries")
        proc.kill()
        at_kill = len(webhooks.at("/hook"))
        assert at_kill < len(records), "the notifier finished before it could be killed"
        proc.start()
        wait_until(running(proc, lambda: {r.pair for r in webhooks.at("/hook")} >= {
            (k.decode(), orjson.loads(v)["status"]) for k, v in records}), 90, 0.2, "every transition after the restart")
        wait_until(lambda: caught_up(kafka_bootstrap, topics), 30, 0.5, "the notifier to commit")
    finally:
        stop_and_read(proc)

    got = [r.pair for r in webhooks.at("/hook")]
    assert set(got) == {(k.decode(), orjson.loads(v)["status"]) for k, v in records}  # at least once
    assert len(got) - len(records) <= 2, f"{len(got) - len(records)} duplicates: the restart did not resume"
    firsts = list(dict.fromkeys(got))
    for alert_id in ids:
        assert [s for a, s in firsts if a == alert_id] == list(STATUSES)
