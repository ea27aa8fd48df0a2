"""The demo's alerts fire in every run: its spike load through the worker's metric fold and the
demo's rules, whatever the run's start (window alignment, sweep boundaries) and length. And its
end: ``axmon serve`` over the database in the background on the first free port from 8321, its
URL and how to stop it printed, the previous demo's server stopped first."""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

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
from processor.ops.demo_dashboard import free_port, is_axmon_serve, start_dashboard
from schemas.codec import encode_event
from tests.unit.test_serve import build


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


def test_free_port_is_the_first_one_that_binds() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        taken.listen()
        assert free_port(port) > port
        with pytest.raises(OSError, match="no free port"):
            free_port(port, tries=1)


def test_the_demo_ends_with_the_dashboard_running_and_says_how_to_stop_it(tmp_path: Path) -> None:
    db = build(tmp_path / "axmon.db", [("acme", "wf1", "running", 10)], [])
    with socket.socket() as busy:  # the port asked for is taken: the next free one is used
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        asked = busy.getsockname()[1]
        console = Console(record=True, width=400)
        first = start_dashboard(db, tmp_path, asked, console)
        assert first is not None and first.url != f"http://127.0.0.1:{asked}/"
    second = None
    try:
        text = console.export_text()
        assert f"The dashboard is at {first.url}" in text and f"stop it with kill {first.pid}" in text
        assert (tmp_path / "serve.pid").read_text().strip() == str(first.pid) and is_axmon_serve(first.pid)
        with urllib.request.urlopen(first.url + "api/v1/executions", timeout=10) as res:
            assert [e["id"] for e in json.loads(res.read())["executions"]] == ["e000"]
        second = start_dashboard(db, tmp_path, asked, console)  # the next demo: stops the previous one
        assert second is not None and "stopped the dashboard of the previous demo" in console.export_text()
        os.waitpid(first.pid, 0)
        assert not is_axmon_serve(first.pid) and is_axmon_serve(second.pid)
    finally:
        for dashboard in (first, second):
            if dashboard is not None and is_axmon_serve(dashboard.pid):
                os.kill(dashboard.pid, signal.SIGTERM)
                os.waitpid(dashboard.pid, 0)
