"""The worker benchmark runs end to end on the session broker at a tiny size.

Only that it completes and yields positive figures: timings on a shared machine prove nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.worker import MIXES, WorkerBenchConfig, run_worker_bench

EVENTS = 300


def test_worker_benchmark_completes_with_positive_figures(kafka_bootstrap: str, tmp_path: Path) -> None:
    config = WorkerBenchConfig.sized(EVENTS, timeout_s=120, floor_runs=1, memory_sizes=(EVENTS,))
    result = asyncio.run(run_worker_bench(kafka_bootstrap, config, tmp_path))

    assert [m.mix for m in result.mixes] == list(MIXES)
    for m in result.mixes:
        assert m.events == EVENTS
        assert m.baseline.events == EVENTS and m.baseline.events_per_s > 0
        for floor, tuned, inbox in ((m.floor, False, False), (m.floor_tuned, True, False), (m.floor_inbox, False, True)):
            assert floor.tuned is tuned and floor.inbox is inbox and floor.events == EVENTS and len(floor.runs) == 1
            assert floor.events_per_s > 0 and floor.cpu_us > 0
        w = m.worker
        assert w.events == EVENTS
        assert 0 < w.startup_s <= w.caught_up_s <= w.drained_s
        assert w.events_per_s > 0 and m.ratio_with_startup > 0
        # 0 only if all events were committed before the first sign of work was seen
        assert w.processing_events_per_s >= 0
        assert w.peak_rss_kib > 0 and w.cpu_s > 0
        assert dict(w.outputs), "the worker wrote nothing"
    [memory] = result.memory
    assert memory.events == EVENTS and memory.span_h >= 1 and memory.worker.peak_rss_kib > 0
    report = result.report()
    assert report.name == "worker" and report.figures and all(f.value >= 0 for f in report.figures)
    values = {(f.case, f.metric): f.value for f in report.figures}
    for m in result.mixes:
        assert values[(m.mix, "Faust floor: decode-only agent (worker's settings)")] > 0
        assert values[(m.mix, "Faust floor, tuned")] > 0
        assert values[(m.mix, "floor through the worker's inbox")] > 0
        # 0 exactly when the worker's processing rate is (see above)
        assert (values[(m.mix, "worker / Faust floor")] > 0) == (m.worker.processing_events_per_s > 0)
    assert "Faust floor" in report.method and "{" not in report.method

