"""The local jar broker for real: Java, the cached jars, a broker process of its own.

Each test runs its own broker in its own data directory on free ports (not the session broker,
not 9092) and stops it in the fixture's teardown, whatever happened.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from processor.errors import BrokerError
from processor.ops import localbroker
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

READY_TIMEOUT = 180.0  # generous: 2-core machines, other suites running at the same time




@pytest.fixture
def data_dir(own_broker_dir: Path) -> Path:
    return own_broker_dir


async def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def _consume_all(bootstrap: str, topic: str, timeout: float = 60.0) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while not values and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            values += [record.value for records in batches.values() for record in records
                       if record.value is not None]
    finally:
        await consumer.stop()
    return values


def test_data_survives_stop_and_start(data_dir: Path) -> None:
    port = free_port()
    progress: list[str] = []
    began = time.monotonic()
    first = localbroker.start(data_dir, port=port, ready_timeout=READY_TIMEOUT,
                              on_progress=progress.append)
    first_start = time.monotonic() - began
    assert first.running and first.pid is not None
    assert first.bootstrap == f"127.0.0.1:{port}" == localbroker.local_bootstrap(data_dir)
    assert "formatting storage" in progress
    assert progress[-1] == f"waiting for the broker (up to {READY_TIMEOUT:.0f} s)"
    assert localbroker.status(data_dir) == first
    assert localbroker.start(data_dir) == first  # already running: the same broker

    topic = f"axmon-test-localbroker-{uuid.uuid4().hex[:12]}"
    asyncio.run(_produce(first.bootstrap, topic, b"survives"))

    assert localbroker.stop(data_dir) is True
    stopped = localbroker.status(data_dir)
    assert (stopped.running, stopped.pid, stopped.bootstrap) == (False, None, first.bootstrap)
    assert localbroker.stop(data_dir) is False
    assert "Kafka Server started" in first.log_file.read_text()

    progress.clear()
    began = time.monotonic()
    second = localbroker.start(data_dir, ready_timeout=READY_TIMEOUT, on_progress=progress.append)
    restart = time.monotonic() - began
    assert second.running and second.pid != first.pid
    assert (second.bootstrap, second.cluster_id) == (first.bootstrap, first.cluster_id)
    assert "formatting storage" not in progress
    assert (data_dir / "broker.log.1").is_file()

    assert asyncio.run(_consume_all(second.bootstrap, topic)) == [b"survives"]
    print(f"first start {first_start:.1f} s, restart {restart:.1f} s")


async def test_start_inside_an_event_loop(data_dir: Path) -> None:
    """The readiness probe runs its own loop in a thread, so async callers may use start()."""
    started = localbroker.start(data_dir, port=free_port(), ready_timeout=READY_TIMEOUT)
    assert started.running
    topic = f"axmon-test-localbroker-{uuid.uuid4().hex[:12]}"
    await _produce(started.bootstrap, topic, b"from a loop")
    assert await _consume_all(started.bootstrap, topic) == [b"from a loop"]


def test_a_broker_dying_at_startup_reports_its_log(data_dir: Path) -> None:
    localbroker.start(data_dir, port=free_port(), ready_timeout=READY_TIMEOUT)
    localbroker.stop(data_dir)
    (data_dir / "data" / "meta.properties").write_text("version=1\nnode.id=7\n")  # not ours
    with pytest.raises(BrokerError, match=r"(?s)the Kafka broker exited; the end of .*broker\.log"):
        localbroker.start(data_dir, ready_timeout=READY_TIMEOUT)
    assert not localbroker.status(data_dir).running


def test_a_port_taken_before_the_broker_binds_it_gets_another(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race between choosing a free port and the broker binding it: another program (here
    a listener, in life often a client socket's local port) takes the controller port first.
    The fresh broker is started again on other ports, keeping the client port it was given."""
    port = free_port()
    thief = socket.socket()
    thief.bind(("127.0.0.1", port + 1))
    thief.listen()
    monkeypatch.setattr(localbroker, "port_free", lambda p: True)  # blind: the race, made certain
    try:
        started = localbroker.start(data_dir, port=port, ready_timeout=READY_TIMEOUT)
    finally:
        thief.close()
    assert started.running and started.bootstrap == f"127.0.0.1:{port}"
    state = localbroker.load_state(data_dir)
    assert state is not None and state.port == port and state.controller_port != port + 1
    topic = f"axmon-test-localbroker-{uuid.uuid4().hex[:12]}"
    asyncio.run(_produce(started.bootstrap, topic, b"after a taken port"))
    assert asyncio.run(_consume_all(started.bootstrap, topic)) == [b"after a taken port"]
