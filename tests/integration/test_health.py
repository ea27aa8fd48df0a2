"""``axmon health`` on real brokers, run as a user runs it (``python -m processor.cli health``).

1. A broker of the test's own (the local jar broker on free ports, never the session broker):
   healthy while it runs, unhealthy with exit 2 once it is stopped, healthy again when it is
   started back.
2. The session broker with a fresh topic prefix: events published while no worker runs make
   the worker's lag grow reading by reading; a worker and a sink then bring every lag to 0.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.ops import localbroker
from processor.runtime.admin import contract_topics, ensure_topics
from processor.store.db import open_for_writing
from producers import AxmonProducer, ProducerConfig
from producers.simulator import ScenarioConfig, generate_scenario
from schemas import Event, Topics
from tests.integration.conftest import TEST_PARTITIONS, free_port
from tests.integration.processes import AxmonProcess, wait_until

pytestmark = pytest.mark.integration

READY_TIMEOUT = 180.0


def health(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """(exit code, the --json document, stderr) of ``axmon health``."""
    done = subprocess.run(
        [sys.executable, "-m", "processor.cli", "health", "--json", "--timeout", "5", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done.returncode, orjson.loads(done.stdout), done.stderr


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in doc["components"]}


def reasons(doc: dict[str, Any], name: str) -> str:
    return " ".join(next(c for c in doc["components"] if c["name"] == name)["reasons"])




@pytest.fixture
def own_broker(own_broker_dir: Path) -> Path:
    return own_broker_dir


def test_health_follows_its_broker_down_and_up(own_broker: Path, tmp_path: Path) -> None:
    started = localbroker.start(own_broker, port=free_port(), ready_timeout=READY_TIMEOUT)
    bootstrap = started.bootstrap
    topics = Topics(f"health-{uuid.uuid4().hex[:8]}.")
    asyncio.run(ensure_topics(bootstrap, contract_topics(topics, TEST_PARTITIONS)))
    db = tmp_path / "axmon.db"
    open_for_writing(db).close()  # an empty database, as a sink leaves it before its first batch
    by_address = ["--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--db", str(db)]
    env = {k: v for k, v in os.environ.items() if k != "AXMON_BOOTSTRAP"}
    by_data_dir = ["--data-dir", str(own_broker), "--topic-prefix", topics.prefix, "--db", str(db)]

    def healthy() -> bool:
        code, doc, _ = health(*by_address)
        return code == 0 and doc["overall"] == "healthy"

    wait_until(healthy, 60, interval=1.0, what="a healthy report from a running broker")
    code, doc, _ = health(*by_address)
    assert code == 0, doc
    assert set(statuses(doc).values()) == {"healthy"}
    assert doc["lag"]["worker"] and set(doc["lag"]["worker"].values()) == {0}
    assert len(doc["lag"]["worker"]) == 3 * TEST_PARTITIONS  # workflow-events, metrics, stats-changes
    code, doc, _ = health(*by_data_dir, env=env)  # the local broker found through its data directory
    assert code == 0 and doc["bootstrap"] == bootstrap

    assert localbroker.stop(own_broker)
    code, doc, stderr = health(*by_address)  # it answers (the helper's subprocess timeout guards a hang)
    assert code == 2 and doc["overall"] == "unhealthy", doc
    assert statuses(doc) == {"broker": "unhealthy", "topics": "unknown", "lag": "unknown", "worker": "unknown",
                             "sink": "unknown", "database": "healthy"}
    assert f"cannot connect to {bootstrap}" in reasons(doc, "broker")
    assert doc["lag"] == {"worker": None, "sink": None}
    code, doc, _ = health(*by_data_dir, env=env)
    assert code == 2 and "axmon kafka start" in reasons(doc, "broker")
    human = subprocess.run([sys.executable, "-m", "processor.cli", "health", *by_address],
                           capture_output=True, text=True, timeout=120)
    assert human.returncode == 2 and "unhealthy" in human.stdout and "Traceback" not in human.stderr

    again = localbroker.start(own_broker, ready_timeout=READY_TIMEOUT)
    assert again.bootstrap == bootstrap
    wait_until(healthy, 90, interval=2.0, what="a healthy report once the broker is back")


async def publish(bootstrap: str, topics: Topics, events: list[Event]) -> None:
    async with AxmonProducer(config=ProducerConfig(bootstrap=bootstrap, topics=topics)) as producer:
        for event in events:
            await producer.publish(event)


def worker_lag(doc: dict[str, Any]) -> int:
    return sum(doc["lag"]["worker"].values())


def test_lag_grows_without_a_worker_and_drains_with_one(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    events = generate_scenario(ScenarioConfig(seed=31, tenants=2, executions=40, start_ms=now - 120_000, span_ms=60_000))
    first, second = events[: len(events) // 3], events[len(events) // 3:]
    db = tmp_path / "axmon.db"
    args = ["--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix, "--db", str(db)]

    asyncio.run(publish(kafka_bootstrap, topics, first))
    code, one, _ = health(*args)
    asyncio.run(publish(kafka_bootstrap, topics, second))
    code_two, two, _ = health(*args)
    # nothing has consumed anything: the worker's lag is exactly what was published
    assert worker_lag(one) == len(first) and worker_lag(two) == len(events) > worker_lag(one)
    lag_reasons = reasons(two, "lag")
    assert f"worker: {len(events):,} records behind" in lag_reasons and "offsets committed to Kafka" in lag_reasons
    assert statuses(two)["database"] == "degraded"  # no sink has written a database yet
    assert code >= 1 and code_two >= 1
    assert statuses(two)["lag"] == ("degraded" if len(events) > 1_000 else "healthy")

    common = ["--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix, "--partitions", str(TEST_PARTITIONS)]
    worker = AxmonProcess("worker", ["worker", *common], tmp_path).start()
    sink = AxmonProcess("sink", ["sink", *common, "--db", str(db)], tmp_path).start()
    last: dict[str, Any] = {}

    def drained() -> bool:
        nonlocal last
        worker.check()
        sink.check()
        code, last, _ = health(*args)
        sink_lag = last["lag"]["sink"]
        return code == 0 and worker_lag(last) == 0 and sink_lag is not None and sum(sink_lag.values()) == 0

    try:
        wait_until(drained, 240, interval=2.0, what="the worker's and the sink's lag to reach 0")
    except AssertionError:
        raise AssertionError(f"last report: {last}\nworker:\n{worker.tail()}\nsink:\n{sink.tail()}") from None
    finally:
        worker_code, sink_code = worker.stop(), sink.stop()
    assert (worker_code, sink_code) == (0, 0), f"{worker.tail()}\n{sink.tail()}"
    assert set(statuses(last).values()) == {"healthy"}
    details = next(c for c in last["components"] if c["name"] == "lag")["details"]
    assert details["worker"]["source"] == "kafka" and details["sink"]["source"] == "database"
    sink_details = next(c for c in last["components"] if c["name"] == "sink")["details"]
    assert sink_details["last_write_source"] == "sink_status" and sink_details["seconds_since_last_write"] < 300
