"""The producer benchmark runs end to end on the session broker at a tiny size.

Only that it completes and yields positive figures: timings on a shared machine prove nothing.
"""

from __future__ import annotations

from bench.producer import (
    BUILD,
    IMPLEMENTATIONS,
    SCRIPTS,
    ProducerBenchConfig,
    run_producer_bench,
)

CALLS = 200


def test_producer_benchmark_completes_with_positive_figures(kafka_bootstrap: str) -> None:
    result = run_producer_bench(kafka_bootstrap, ProducerBenchConfig.sized(CALLS))

    assert sorted((c.implementation, c.script) for c in result.cases) == sorted(
        (i, s) for i in IMPLEMENTATIONS for s in SCRIPTS)
    for c in result.cases:
        assert c.latency.calls == CALLS
        assert 0 < c.latency.median_us <= c.latency.p99_us <= c.latency.max_us
        if c.implementation != BUILD:
            assert c.acked == CALLS and c.events_per_s > 0
    report = result.report()
    assert report.name == "producer" and report.figures and report.notes
    assert all(f.value > 0 for f in report.figures if "over 0.1 ms" not in f.metric)
    assert all(f.value >= 0 for f in report.figures)
