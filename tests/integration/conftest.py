"""One real Kafka broker per test session, unique topics per test.

Where the broker comes from, in order:
1. ``AXMON_TEST_BOOTSTRAP=host:port``: a broker you run yourself;
2. a Docker engine that answers a ping: ``apache/kafka`` through testcontainers;
3. the local jar broker (``processor.ops.localbroker``) in a temporary data directory.
If none can be had the session fails loudly: integration tests never skip.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.ops import localbroker
from processor.runtime.admin import contract_topics, ensure_topics
from schemas.topics import Topics

log = logging.getLogger(__name__)

KAFKA_IMAGE = "apache/kafka:4.1.2"
TEST_PARTITIONS = 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def _docker_answers() -> bool:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    import docker  # type: ignore[import-untyped]

    try:
        client = docker.from_env(timeout=3)
    except Exception:  # no engine, no socket, no permission: all mean "not here"
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def _container_broker() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = 9092
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(port, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", f"PLAINTEXT://:{port},CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )
    container.start()
    try:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        container.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bootstrap address of the session's broker."""
    explicit = os.environ.get("AXMON_TEST_BOOTSTRAP")
    if explicit:
        log.info("using the broker at %s (AXMON_TEST_BOOTSTRAP)", explicit)
        yield explicit
        return
    if _docker_answers():
        log.info("starting %s with testcontainers", KAFKA_IMAGE)
        yield from _container_broker()
        return
    data_dir = tmp_path_factory.mktemp("kafka")
    try:
        status = localbroker.start(data_dir, ready_timeout=180, ephemeral=True)
    except Exception as exc:
        pytest.fail(
            "no Kafka broker for the integration tests: set AXMON_TEST_BOOTSTRAP, run a Docker "
            f"engine, or fix the local broker: {exc}",
            pytrace=False,
        )
    try:
        yield status.bootstrap
    finally:
        localbroker.stop(data_dir)


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    """A fresh set of contract topics (unique prefix) created on the session broker."""
    prefix = f"test-{uuid.uuid4().hex[:10]}."
    names = Topics(prefix)
    asyncio.run(ensure_topics(kafka_bootstrap, contract_topics(names, TEST_PARTITIONS)))
    return names


def free_port() -> int:
    """A free port whose successor is free too (for the controller listener)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port < 65535 and localbroker.port_free(port) and localbroker.port_free(port + 1):
            return port
    raise RuntimeError("no pair of free ports found")


def started_own_broker(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[Path, str]]:
    """A local broker of a test's own on free ports, (data directory, bootstrap), stopped after."""
    data = tmp_path_factory.mktemp(name)
    status = localbroker.start(data, ready_timeout=180, ephemeral=True)
    try:
        yield data, status.bootstrap
    finally:
        localbroker.stop(data)


@pytest.fixture
def own_broker_dir(tmp_path: Path) -> Iterator[Path]:
    """The data directory of a broker of the test's own (to stop and start at will), stopped
    in teardown whatever happened."""
    path = tmp_path / "kafka"
    try:
        yield path
    finally:
        localbroker.stop(path)
        assert not localbroker.status(path).running
