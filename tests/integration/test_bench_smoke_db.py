"""The sink, query and replay benchmarks run end to end at a tiny size.

Only that they complete, write what they claim and yield positive figures: timings on a shared
machine prove nothing, so nothing here asserts a rate.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

from bench.dbgen import QueryDbSpec
from bench.queries import QueryBenchConfig, run_query_bench
from bench.replay import ReplayBenchConfig, run_replay_bench
from bench.sink import SinkBenchConfig, run_sink_bench
from processor.store.queries import Monitor


def test_sink_benchmark_completes_with_positive_figures(kafka_bootstrap: str, tmp_path: Path) -> None:
    config = SinkBenchConfig(executions=300, samples=2_000, batch_records=500, template_executions=100,
                             live_executions=30, runs=1, live_timeout_s=120)
    result = run_sink_bench(kafka_bootstrap, config, tmp_path)

    assert result.executions == 300 and result.samples == 2_000 and result.steps > 0 and result.rollups > 0
    assert result.batches == math.ceil((300 + 2_000 + result.rollups) / 500)
    for write in (result.baseline, result.sink, result.rewrite):
        assert write.rows == 300 + result.steps + 2_000 + result.rollups
        assert write.rows_per_s > 0
    assert result.live is not None
    assert result.live.records > 0 and result.live.batches > 0 and result.live.db_rows > 0
    assert result.live.sink_per_s > 0 and result.live.baseline_per_s > 0
    process = result.live.process  # the real `axmon sink` on the same topics
    assert process is not None and process.records == result.live.records
    assert process.peak_rss_kib > 0 and process.per_s > 0 and process.exit_code == 0
    report = result.report()
    assert report.name == "sink" and all(f.value > 0 for f in report.figures)


def test_query_benchmark_builds_caches_and_times_every_query(tmp_path: Path) -> None:
    spec = QueryDbSpec(executions=500, samples=5_000, span_days=2)
    config = QueryBenchConfig(spec=spec, calls=5, min_calls=2, budget_s=5.0, cache=tmp_path)
    first = run_query_bench(config)

    assert not first.cached
    g = first.generation
    assert (g.executions, g.samples) == (500, 5_000) and g.steps >= 500 and 0 < g.rollups <= 5_000
    with Monitor(first.db_path) as m:
        assert m.get_workflow_stats()["total"] == 500
        assert m.get_metric_count() == 5_000
        assert m.counts()["metric_rollups"] == g.rollups
    assert all(t.calls >= 2 and t.median_ms > 0 and t.p99_ms >= t.median_ms for t in first.timings)
    assert first.storage.per_execution > 0 and first.storage.per_sample > 0

    again = run_query_bench(config)
    assert again.cached and again.db_path == first.db_path and again.generation == first.generation
    report = again.report()
    assert report.name == "queries" and all(f.value > 0 for f in report.figures)


def test_replay_benchmark_replays_every_event(kafka_bootstrap: str, tmp_path: Path) -> None:
    config = ReplayBenchConfig(events=1_500, timeout_s=300)
    result = asyncio.run(run_replay_bench(kafka_bootstrap, config, tmp_path))

    assert result.produced.events == 1_500 and result.result.records == 1_500
    assert result.produced.executions > 0 and result.result.executions > 0 and result.result.samples > 0
    assert result.replay_per_s > 0 and result.baseline_per_s > 0 and result.ratio > 0
    assert result.db_bytes > 0
    report = result.report()
    assert report.name == "replay" and all(f.value > 0 for f in report.figures)
