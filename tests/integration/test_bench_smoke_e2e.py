"""The end-to-end benchmark runs on the session broker at a tiny size: worker and sink as child
processes, a burst, a short paced load, the Kafka baseline.

Only that it completes, matches every event it sent with a row in the database, and yields
positive, consistent figures: timings on a shared machine prove nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.e2e import KINDS, E2EBenchConfig, run_e2e_bench


def test_e2e_benchmark_completes_with_consistent_figures(kafka_bootstrap: str, tmp_path: Path) -> None:
    config = E2EBenchConfig(full_topics_events=300, burst_events=300, duration_s=2.0, baseline_s=2.0, warmup_events=30,
                            startup_timeout_s=180, burst_timeout_s=180, drain_timeout_s=120)
    result = asyncio.run(run_e2e_bench(kafka_bootstrap, config, tmp_path))

    assert result.burst.events == 300
    assert 0 < result.burst.produce_s <= result.burst.visible_s <= result.burst.settled_s
    full = result.full
    assert full is not None and full.events == 300
    assert 0 < full.first_work_s <= full.visible_s <= full.settled_s and full.produce_s > 0
    assert result.offered_rate > 0 and result.offered_rate == pytest.approx(0.5 * full.settled_per_s)
    assert result.send_rate > 0 and result.delivered_rate > 0 and result.startup_s > 0
    every = result.latencies["all"]
    assert every.sent == sum(result.latencies[k].sent for k in KINDS) >= 1
    assert result.drained and every.matched == every.sent, "an event sent was never seen in the database"
    for kind in (*KINDS, "all"):
        lat = result.latencies[kind]
        assert lat.matched == lat.sent
        if lat.matched:
            assert 0 < lat.ms(50) <= lat.ms(95) <= lat.ms(99) <= lat.max_ms
    assert result.latencies["lifecycle"].sent > 0 and result.latencies["metric"].sent > 0
    tapped = result.worker_output  # the worker's execution-state records, read before the sink
    assert tapped.sent == tapped.matched == result.latencies["lifecycle"].sent
    assert all(0 < t.sent == t.matched for t in result.thirds)
    base = result.baseline.latencies
    assert base.sent == every.sent  # the same events: baseline_s == duration_s
    assert base.matched == base.sent and 0 < base.ms(50) <= base.ms(99) <= base.max_ms
    assert result.poll_mean_ms > 0 and result.poll_max_gap_ms >= result.poll_mean_ms
    assert result.worker.peak_rss_kib > 0 and result.sink.peak_rss_kib > 0
    assert result.worker.cpu_s > 0 and result.sink.cpu_s > 0
    report = result.report()
    assert report.name == "e2e" and report.figures and all(f.value >= 0 for f in report.figures)
