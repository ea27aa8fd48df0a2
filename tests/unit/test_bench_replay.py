"""The replay benchmark's configuration (bench.replay): sizes and fold processes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bench.common import BenchError
from bench.replay import WORKERS_ENV, configs_for
from processor.runtime.replay_plan import DEFAULT_WORKERS


def _ctx(events: int | None = 5_000) -> Any:
    return SimpleNamespace(events=events, quick=False, profile_dir=None)


def test_the_replays_fold_with_replays_default_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert [(c.events, c.workers) for c in configs_for(_ctx())] == [(5_000, DEFAULT_WORKERS)]
    monkeypatch.setenv(WORKERS_ENV, "2")
    assert [c.workers for c in configs_for(_ctx(None))] == [2, 2]  # both full sizes


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_number_of_fold_processes_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(WORKERS_ENV, value)
    with pytest.raises(BenchError, match=WORKERS_ENV):
        configs_for(_ctx())
