"""The demo's alerts fire in every run: its spike load through the worker's metric fold and the
demo's rules, whatever the run's start (window alignment, sweep boundaries) and length."""

from __future__ import annotations

from typing import Any

import orjson
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.folds.alerting import AlertCore
from processor.folds.config import FoldConfig
from processor.folds.metrics_core import MetricsCore
from processor.folds.records import Origin, Stream
from processor.folds.rules import parse_rules
from processor.ops.demo import (
    DEMO_ALERTS,
    DEMO_GRACE_MS,
    DEMO_RULES,
    DEMO_WINDOW_MS,
    spike_load,
)
from schemas.codec import encode_event


def alert_moves(start_ms: int, span_ms: int) -> list[dict[str, Any]]:
    config = FoldConfig(window_ms=DEMO_WINDOW_MS, grace_ms=DEMO_GRACE_MS)
    core = MetricsCore({}, config, alerts=AlertCore({}, parse_rules(yaml.safe_load(DEMO_RULES))))  # type: ignore[arg-type]
    out = []
    for o, sample in enumerate(spike_load(start_ms, span_ms)):
        partition = 0 if sample.metric_type == "cpu.usage" else 1  # each series alone: its own stream time
        out += core.process(sample, Origin("m", partition, o), encode_event(sample), None)
    return [orjson.loads(e.value) for e in out if e.stream is Stream.ALERTS and e.value is not None]


@settings(max_examples=200, deadline=None)
@given(start_ms=st.integers(1_700_000_000_000, 1_700_000_100_000), seconds=st.sampled_from([10, 20, 30, 60]))
def test_both_demo_rules_fire_whatever_the_start_and_length(start_ms: int, seconds: int) -> None:
    moves = alert_moves(start_ms, seconds * 1000)
    fired = {m["rule"] for m in moves if m["status"] == "firing"}
    assert fired == set(DEMO_ALERTS), [(m["rule"], m["status"], m["at"] - start_ms) for m in moves]
