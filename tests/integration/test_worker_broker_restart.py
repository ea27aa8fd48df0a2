"""A worker that lives through broker restarts under load catches up by itself: the broker is
stopped and started twice while the worker is RUNNING and mid-stream (it has committed part of
what waits for it), more events come after each, and the worker commits everything and publishes
every execution as the independent oracle says, with its stall watchdog switched off (so no
restart can have rescued it) and no restart of its own in its log.

It runs on a broker of its own (the local jar broker in a temporary directory), because it
restarts it."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.ops import localbroker
from processor.runtime.admin import contract_topics, ensure_topics
from schemas import Topics
from tests.integration.conftest import TEST_PARTITIONS, started_own_broker
from tests.integration.processes import AxmonProcess, wait_until
from tests.integration.test_worker import (
    GRACE_MS,
    WINDOW_MS,
    committed_and_waiting,
    latest,
    publish,
    scenario,
)
from tests.oracle import differences, expected_executions


@pytest.fixture
def restartable_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    yield from started_own_broker(tmp_path_factory, "restart-kafka")


def test_a_running_worker_catches_up_after_broker_restarts(restartable_broker: tuple[Path, str], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data, bootstrap = restartable_broker
    topics = Topics("restart.")
    asyncio.run(ensure_topics(bootstrap, contract_topics(topics, TEST_PARTITIONS)))
    events = scenario(seed=31, executions=300)
    expected = expected_executions(events)
    args = ["worker", "--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--partitions", str(TEST_PARTITIONS),
            "--window-ms", str(WINDOW_MS), "--grace-ms", str(GRACE_MS), "--stall-timeout", "0"]
    proc = AxmonProcess("worker", args, tmp_path).start()
    restarts = 2
    size = math.ceil(len(events) / (restarts + 1))
    waiting_at_restart: list[int] = []
    try:
        for n in range(restarts + 1):
            chunk = events[n * size:(n + 1) * size]
            if n == restarts:
                asyncio.run(publish(bootstrap, topics, chunk))
                break
            # mid-stream: the worker has committed some of the chunk's first half, its second half
            # has just been published, and the broker stops while those records wait
            before, _ = committed_and_waiting(bootstrap, topics)
            asyncio.run(publish(bootstrap, topics, chunk[:len(chunk) // 2]))
            wait_until(lambda: committed_and_waiting(bootstrap, topics)[0] > before, 180, interval=0.3,
                       what=f"the worker to commit something (log:\n{proc.tail()})")
            asyncio.run(publish(bootstrap, topics, chunk[len(chunk) // 2:]))
            waiting_at_restart.append(committed_and_waiting(bootstrap, topics)[1])
            localbroker.stop(data)
            assert waiting_at_restart[-1] > 0, "the restart must land while the worker has work in hand"
            localbroker.start(data, ready_timeout=180)
            assert proc.alive(), proc.tail()
        state: dict[str, object] = {}

        def caught_up() -> bool:
            nonlocal state
            assert proc.alive(), f"worker died:\n{proc.tail()}"
            if committed_and_waiting(bootstrap, topics)[1]:
                return False
            state = latest(bootstrap, topics.execution_state)
            return not differences(state, expected)

        try:
            wait_until(caught_up, 300, interval=3.0, what="the worker to commit everything after the broker restarts")
        except AssertionError:
            raise AssertionError(f"waiting {committed_and_waiting(bootstrap, topics)[1]}; executions: "
                                 f"{differences(state, expected)}\nworker log:\n{proc.tail(80)}") from None
        log = proc.log.read_text()
        assert "starting again" not in log and "stalled:" not in log, proc.tail(80)
        assert proc.starts == 1
        print(f"records waiting for the worker when the broker stopped: {waiting_at_restart}")
    finally:
        assert proc.stop() == 0, proc.tail()
