"""``axmon kafka reset`` on a real local broker: it stops it and removes its data, so the next
start is a new, empty broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from processor.cli import main
from processor.ops import localbroker
from processor.runtime.admin import TopicSpec, ensure_topics, partition_counts

READY_TIMEOUT = 180.0


def test_reset_stops_the_broker_and_the_next_start_is_empty(
    own_broker_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = localbroker.start(own_broker_dir, ready_timeout=READY_TIMEOUT, ephemeral=True)
    asyncio.run(ensure_topics(first.bootstrap, [TopicSpec("before-reset", 1)]))
    assert main(["kafka", "reset", "--yes", "--data-dir", str(own_broker_dir)]) == 0
    assert "removed" in capsys.readouterr().err
    assert not localbroker.status(own_broker_dir).running and not own_broker_dir.exists()
    second = localbroker.start(own_broker_dir, ready_timeout=READY_TIMEOUT, ephemeral=True)
    assert second.cluster_id != first.cluster_id
    assert asyncio.run(partition_counts(second.bootstrap, ["before-reset"])) == {}
