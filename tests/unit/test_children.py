"""processor.ops.children: what a child's log says about it."""

from __future__ import annotations

import inspect
from pathlib import Path

from processor.ops.children import RESTART_NOTICE, AxmonChild
from processor.runtime import worker


def test_restarts_counts_the_workers_own_restart_notices_since_the_last_start(tmp_path: Path) -> None:
    child = AxmonChild("worker", ["worker"], tmp_path)
    assert child.restarts() == 0  # no log yet
    child.starts = 2
    child.log.write_text("--- start 1 ---\naxmon worker: stalled, starting again in 2 s\n"
                         "--- start 2 ---\nfine\naxmon worker: a record could not be delivered, starting again in 4 s\n")
    assert child.restarts() == 1


def test_the_worker_writes_the_notice_the_children_look_for() -> None:
    assert RESTART_NOTICE.strip(", ") in inspect.getsource(worker.restart_process)
    assert '{reason}' + RESTART_NOTICE in inspect.getsource(worker.restart_process)
