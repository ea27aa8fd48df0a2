"""The delivery policy of ``axmon notify``: what a response means, when to try again, what a
record is; and one webhook's delivery loop against a real local HTTP server (no Kafka)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest
from aiohttp import web

from processor.errors import ConfigError
from processor.runtime.notify import (
    BadAlert,
    NotifyCounters,
    RetryPolicy,
    Verdict,
    classify_exception,
    classify_status,
    header_value,
    parse_retry_after,
    read_alert,
)
from processor.runtime.notify_runner import Deliverer
from processor.settings import Settings
from processor.urls import check_webhook_url, display_url

ALERT = {
    "id": "a-1", "rule": "slow-api", "kind": "threshold", "severity": "warning", "status": "firing",
    "tenant_id": "t1", "metric_type": "api.request.duration", "labels": {}, "value": 1234.5,
    "acknowledged_at": None, "at": 1700000060000,
}


# -- responses -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    assert classify_status(status) is Verdict.DELIVERED


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_408_429_and_5xx_are_retried(status: int) -> None:
    assert classify_status(status) is Verdict.RETRY


@pytest.mark.parametrize("status", [100, 301, 302, 307, 400, 401, 403, 404, 405, 409, 410, 413, 422, 600, 0])
def test_other_answers_are_permanent(status: int) -> None:
    assert classify_status(status) is Verdict.PERMANENT


def test_timeouts_and_connection_errors_are_retried_anything_else_is_permanent() -> None:
    assert classify_exception(TimeoutError()) is Verdict.RETRY
    assert classify_exception(ConnectionRefusedError()) is Verdict.RETRY
    assert classify_exception(aiohttp.ServerDisconnectedError()) is Verdict.RETRY
    assert classify_exception(aiohttp.ClientPayloadError("cut short")) is Verdict.RETRY
    assert classify_exception(aiohttp.InvalidURL("nope")) is Verdict.PERMANENT
    assert classify_exception(ValueError("a bug")) is Verdict.PERMANENT


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("", now) is None
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now) == pytest.approx(20.0)
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now) == 0.0  # in the past: now


# -- backoff -------------------------------------------------------------------------------------


def test_the_default_schedule_doubles_from_half_a_second_up_to_30() -> None:
    assert RetryPolicy().schedule() == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert RetryPolicy(initial_backoff_s=1, max_backoff_s=5, max_attempts=5).schedule() == [1, 2, 4, 5]
    assert RetryPolicy(max_attempts=1).schedule() == []


def test_next_delay_is_bounded_by_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, max_elapsed_s=1_000)
    assert policy.next_delay(1, 0.0) == 0.5
    assert policy.next_delay(2, 0.5) == 1.0
    assert policy.next_delay(3, 1.5) is None


def test_next_delay_is_bounded_by_time() -> None:
    policy = RetryPolicy(max_attempts=100, max_elapsed_s=10)
    assert policy.next_delay(4, 5.0) == 4.0  # the attempt starts at 9 s: allowed
    assert policy.next_delay(4, 6.5) is None  # it would start at 10.5 s
    assert RetryPolicy(max_elapsed_s=0).next_delay(1, 0.0) is None


def test_retry_after_stretches_the_wait_but_never_past_the_cap() -> None:
    policy = RetryPolicy(max_elapsed_s=1_000)
    assert policy.next_delay(1, 0.0, retry_after_s=5) == 5
    assert policy.next_delay(1, 0.0, retry_after_s=0.1) == 0.5  # never shorter than the backoff
    assert policy.next_delay(1, 0.0, retry_after_s=3_600) == 30


def test_a_huge_attempt_number_does_not_overflow() -> None:
    assert RetryPolicy().backoff(10_000) == 30
    with pytest.raises(ValueError):
        RetryPolicy().backoff(0)


@pytest.mark.parametrize("policy", [
    RetryPolicy(initial_backoff_s=0), RetryPolicy(initial_backoff_s=2, max_backoff_s=1),
    RetryPolicy(max_attempts=0), RetryPolicy(max_elapsed_s=-1), RetryPolicy(max_backoff_s=float("inf")),
])
def test_bad_policies_are_config_errors(policy: RetryPolicy) -> None:
    with pytest.raises(ConfigError):
        policy.validate()


# -- records -------------------------------------------------------------------------------------


def test_an_alert_is_its_value_verbatim_with_id_and_status_headers() -> None:
    value = orjson.dumps(ALERT)
    alert = read_alert(b"a-1", value)
    assert (alert.alert_id, alert.status, alert.body) == ("a-1", "firing", value)
    assert alert.headers() == {
        "Content-Type": "application/json", "X-Axmon-Alert-Id": "a-1", "X-Axmon-Alert-Status": "firing",
    }


def test_the_key_stands_in_for_a_missing_id() -> None:
    alert = read_alert(b"from-key", orjson.dumps({"status": "resolved"}))
    assert alert.alert_id == "from-key"


@pytest.mark.parametrize("value", [b"not json", b"", b"[1, 2]", b'"firing"', b"{}", b'{"id": "x", "status": 3}', None])
def test_records_that_are_not_alert_transitions_are_bad(value: bytes | None) -> None:
    with pytest.raises(BadAlert):
        read_alert(b"k", value)


def test_no_id_and_no_key_is_bad() -> None:
    with pytest.raises(BadAlert):
        read_alert(None, orjson.dumps({"status": "firing"}))


def test_header_values_cannot_break_the_header_block() -> None:
    assert header_value("plain-id_01:x") == "plain-id_01:x"
    assert header_value("a\r\nX-Evil: 1") == "a%0D%0AX-Evil: 1"
    assert header_value("café") == "caf%C3%A9"


# -- webhooks and settings -----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "https://hooks.example.com/services/T/B/x?y=1"])
def test_good_webhook_urls(url: str) -> None:
    assert check_webhook_url(url) == url


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/hook", "http:///nohost", "http://h:99999/", "http://h:port/"])
def test_bad_webhook_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        check_webhook_url(url)


def test_passwords_stay_out_of_logs() -> None:
    assert display_url("https://bot:s3cret@example.com/hook") == "https://bot:***@example.com/hook"
    assert display_url("https://example.com/hook") == "https://example.com/hook"


def test_webhooks_from_the_environment_and_flags_win() -> None:
    env = {"AXMON_WEBHOOKS": "http://a.example/1  https://b.example/2\n"}
    assert Settings.load(environ=env).webhooks == ("http://a.example/1", "https://b.example/2")
    assert Settings.load({"webhooks": ("http://c.example/",)}, environ=env).webhooks == ("http://c.example/",)
    with pytest.raises(ConfigError):
        Settings.load(environ={"AXMON_WEBHOOKS": "not-a-url"})


def test_counters_line_and_report() -> None:
    counters = NotifyCounters(records=3, invalid=1)
    counters.url("http://a/").delivered = 3
    counters.url("https://u:pw@b/").failed = 3
    assert counters.summary() == (
        "3 alert transitions, 1 invalid; http://a/: 3 delivered, 0 retried, 0 failed; "
        "https://u:***@b/: 0 delivered, 0 retried, 3 failed"
    )
    assert counters.report()[1:] == ["  http://a/: 3 delivered, 0 retried, 0 failed", "  https://u:***@b/: 0 delivered, 0 retried, 3 failed"]
    before = counters.snapshot()
    counters.url("http://a/").retried += 1
    assert counters.snapshot() != before


# -- one webhook's delivery loop, on a real local server -------------------------------------------


class Script:
    """A local webhook answering from a script of statuses (the last one repeats)."""

    def __init__(self, *statuses: int, delay_first_s: float = 0.0, retry_after: str | None = None) -> None:
        self.statuses = list(statuses)
        self.delay_first_s = delay_first_s
        self.retry_after = retry_after
        self.requests: list[tuple[dict[str, str], bytes, float]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read(), time.monotonic()))
        if len(self.requests) == 1 and self.delay_first_s:
            await asyncio.sleep(self.delay_first_s)
        status = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        return web.Response(status=status, text="nope" if status >= 300 else "", headers=headers)


Serve = Callable[["Script"], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(script: Script) -> str:
        app = web.Application()
        app.router.add_post("/hook", script.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/hook"

    yield start
    for runner in runners:
        await runner.cleanup()


FAST = RetryPolicy(initial_backoff_s=0.05, max_backoff_s=0.2, max_attempts=4, max_elapsed_s=10)


async def deliver(url: str, policy: RetryPolicy = FAST, timeout_s: float = 5.0, stopping: asyncio.Event | None = None) -> tuple[Verdict | None, NotifyCounters]:
    counters = NotifyCounters()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        deliverer = Deliverer(session, policy, counters, stopping or asyncio.Event())
        verdict = await deliverer.deliver(url, read_alert(b"a-1", orjson.dumps(ALERT)))
    return verdict, counters


async def test_delivered_at_once_with_body_and_headers(serve: Serve) -> None:
    script = Script(200)
    url = await serve(script)
    verdict, counters = await deliver(url)
    assert verdict is Verdict.DELIVERED
    assert (counters.url(url).delivered, counters.url(url).retried, counters.url(url).failed) == (1, 0, 0)
    [(headers, body, _)] = script.requests
    assert orjson.loads(body) == ALERT
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Axmon-Alert-Id"] == "a-1" and headers["X-Axmon-Alert-Status"] == "firing"


async def test_5xx_then_2xx_is_delivered_after_retries_with_growing_waits(serve: Serve) -> None:
    script = Script(500, 503, 200)
    url = await serve(script)
    verdict, counters = await deliver(url)
    assert verdict is Verdict.DELIVERED
    assert (counters.url(url).delivered, counters.url(url).retried, counters.url(url).failed) == (1, 2, 0)
    times = [t for _, _, t in script.requests]
    assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.1


async def test_4xx_is_not_retried(serve: Serve) -> None:
    script = Script(400)
    url = await serve(script)
    verdict, counters = await deliver(url)
    assert verdict is Verdict.PERMANENT and len(script.requests) == 1
    assert (counters.url(url).delivered, counters.url(url).retried, counters.url(url).failed) == (0, 0, 1)


async def test_429_is_retried(serve: Serve) -> None:
    script = Script(429, 200, retry_after="0")
    url = await serve(script)
    verdict, _ = await deliver(url)
    assert verdict is Verdict.DELIVERED and len(script.requests) == 2


async def test_retries_are_bounded_then_the_record_fails(serve: Serve) -> None:
    script = Script(502)
    url = await serve(script)
    verdict, counters = await deliver(url)
    assert verdict is Verdict.PERMANENT and len(script.requests) == FAST.max_attempts
    assert (counters.url(url).delivered, counters.url(url).retried, counters.url(url).failed) == (0, 3, 1)


async def test_a_timeout_is_retried(serve: Serve) -> None:
    script = Script(200, delay_first_s=1.0)
    url = await serve(script)
    verdict, counters = await deliver(url, timeout_s=0.3)
    assert verdict is Verdict.DELIVERED and counters.url(url).retried == 1


async def test_a_refused_connection_is_retried_then_fails() -> None:
    policy = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.01, max_attempts=3, max_elapsed_s=5)
    verdict, counters = await deliver("http://127.0.0.1:9/hook", policy)  # discard port: nobody listens
    assert verdict is Verdict.PERMANENT
    assert (counters.url("http://127.0.0.1:9/hook").retried, counters.url("http://127.0.0.1:9/hook").failed) == (2, 1)


async def test_a_stop_interrupts_the_wait_and_counts_no_failure(serve: Serve) -> None:
    script = Script(500)
    url = await serve(script)
    stopping = asyncio.Event()
    # a backoff no test run could wait out: only the stop can end this delivery
    slow = RetryPolicy(initial_backoff_s=86_400, max_backoff_s=86_400, max_attempts=5, max_elapsed_s=864_000)
    asyncio.get_running_loop().call_later(0.3, stopping.set)
    verdict, counters = await asyncio.wait_for(deliver(url, slow, stopping=stopping), timeout=600)
    assert verdict is None
    assert (counters.url(url).delivered, counters.url(url).retried, counters.url(url).failed) == (0, 0, 0)


# -- the command's errors --------------------------------------------------------------------------


def _axmon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("AXMON_WEBHOOKS", "AXMON_BOOTSTRAP")}
    return subprocess.run([sys.executable, "-m", "processor.cli", *args], check=False, capture_output=True, text=True,
                          timeout=60, env={**environ, **(env or {})})


def test_notify_without_a_webhook_says_how_to_give_one() -> None:
    done = _axmon("notify", "--bootstrap", "127.0.0.1:9")
    assert done.returncode == 1 and "--webhook" in done.stderr and "AXMON_WEBHOOKS" in done.stderr
    assert "Traceback" not in done.stderr


def test_notify_with_a_bad_webhook_or_option_fails_clearly() -> None:
    done = _axmon("notify", "--bootstrap", "127.0.0.1:9", "--webhook", "ftp://x/")
    assert done.returncode == 1 and "ftp://x/" in done.stderr and "Traceback" not in done.stderr
    assert _axmon("notify", "--webhook", "http://x/", "--max-attempts", "0").returncode == 2
    assert _axmon("notify", "--webhook", "http://x/", "--backoff", "-1").returncode == 2
    done = _axmon("notify", "--bootstrap", "127.0.0.1:9", "--webhook", "http://x/", "--backoff", "5", "--max-backoff", "1")
    assert done.returncode == 1 and "backoff" in done.stderr
