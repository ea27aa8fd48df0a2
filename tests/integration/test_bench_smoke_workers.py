"""The several-workers benchmark runs end to end on the session broker at a tiny size: two workers
in one group drain the events. Only that it completes with positive figures."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.workers import run_group

EVENTS = 300


def test_two_workers_drain_the_benchmark_events(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = asyncio.run(run_group(kafka_bootstrap, 2, EVENTS, tmp_path, timeout_s=180))
    assert run.workers == 2 and run.events >= EVENTS
    assert 0 < run.startup_s <= run.drained_s and run.events_per_s > 0 and run.cpu_s > 0
    assert sorted(p.name for p in tmp_path.glob("2-workers/state-*")) == ["state-0", "state-1"]
