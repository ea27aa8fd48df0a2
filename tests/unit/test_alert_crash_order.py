"""A crash at any point of a record's table writes loses no alert verdict: the worker keeps the
alert states in the windows table (one changelog partition, which persists its writes as a
prefix), and commits a record's alert writes before its window writes. Without a broker: the
table is a dict that logs its writes, and a crash keeps any prefix of that log."""

from __future__ import annotations

from typing import Any

from processor.folds.alerting import AlertCore
from processor.folds.config import FoldConfig
from processor.folds.metrics_core import MetricsCore
from processor.folds.records import Keyspace, Origin
from processor.folds.rules import parse_rules
from processor.runtime.worker import ALERT_KEYS
from producers.factory import EventFactory
from schemas.codec import encode_event

MIN = 60_000
TOPIC = "t.metrics"
CONFIG = FoldConfig(window_ms=MIN, grace_ms=0, sweep_interval_ms=MIN)
RULES = parse_rules({"rules": [{
    "name": "slow-api", "metric_type": "api.request.duration", "aggregation": "avg", "operator": "gt",
    "threshold": 1000, "window": "1m", "for": "1m", "severity": "warning",
}]})


class LoggedTable:
    """A table whose every write is logged, in order, as its changelog would be."""

    def __init__(self, entries: dict[str, Any] | None = None) -> None:
        self.entries = dict(entries or {})
        self.log: list[tuple[str, Any]] = []

    def get(self, key: str) -> Any:
        return self.entries.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.entries[key] = value
        self.log.append((key, value))

    def __delitem__(self, key: str) -> None:
        del self.entries[key]
        self.log.append((key, None))

    def items(self) -> list[tuple[str, Any]]:
        return list(self.entries.items())


def recovered(log: list[tuple[str, Any]]) -> LoggedTable:
    entries: dict[str, Any] = {}
    for key, value in log:
        if value is None:
            entries.pop(key, None)
        else:
            entries[key] = value
    return LoggedTable(entries)


def cores(table: LoggedTable) -> MetricsCore:
    alerts = AlertCore(Keyspace(table, ALERT_KEYS), RULES)  # type: ignore[arg-type]
    return MetricsCore(Keyspace(table, exclude=(ALERT_KEYS,)), CONFIG, alerts)  # type: ignore[arg-type]


def records() -> list[tuple[Any, bytes]]:
    f = EventFactory()
    out = []
    for half_minute in range(24):  # 12 minutes: slow for 6, then fast
        value = 2000.0 if half_minute < 12 else 100.0
        sample = f.record("api.request.duration", value, unit="ms", tenant_id="t1", occurred_at=half_minute * MIN // 2 + 1)
        out.append((sample, encode_event(sample)))
    return out


def alert_states(table: LoggedTable) -> dict[str, Any]:
    return {k: v for k, v in table.entries.items() if k.startswith(ALERT_KEYS)}


def run(table: LoggedTable, from_offset: int = 0) -> list[tuple[int, int]]:
    """Process the records from ``from_offset`` on; returns each record's (first, end) log index."""
    core = cores(table)
    spans = []
    for offset, (sample, raw) in enumerate(records()):
        if offset < from_offset:
            continue
        start = len(table.log)
        core.process(sample, Origin(TOPIC, 0, offset), raw, None)
        spans.append((start, len(table.log)))
    return spans


def test_a_crash_anywhere_in_a_records_writes_keeps_every_alert_verdict() -> None:
    whole = LoggedTable()
    spans = run(whole)
    expected = alert_states(whole)
    statuses = {v["last"]["status"] for v in expected.values() if v.get("last")}
    assert statuses == {"resolved"}, "the scenario moves the alert to firing and back"
    moving = [(offset, span) for offset, span in enumerate(spans)
              if any(k.startswith(ALERT_KEYS) for k, _ in whole.log[span[0]:span[1]])]
    assert moving, "some records move the alert"
    for offset, (first, end) in moving:
        for cut in range(first, end + 1):
            table = recovered(whole.log[:cut])  # the crash kept this much of the changelog
            run(table, from_offset=offset)      # the records from the last commit are redelivered
            assert alert_states(table) == expected, f"crash at write {cut - first} of record {offset}"
