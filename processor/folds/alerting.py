"""Threshold alerts, evaluated in event time on closed metric windows. Pure.

The metrics fold closes a series' window when its partition's stream time passes the window's
end plus grace; at that moment each rule watching the series aggregates the closed windows
that end within the rule's ``window`` up to this one, and its alert moves:

    (none) -> pending -> firing -> acknowledged -> resolved
                 \\-> resolved (the condition stopped before ``for`` had passed)

- pending: the condition holds at a window end (and any cooldown has passed);
- firing: it has held for ``for`` (window ends, event time) - at once when ``for`` is 0;
- resolved: a firing alert whose value no longer passes the resolve threshold (the threshold
  itself when there is none), or a pending one whose condition stopped;
- acknowledged: an ack (a record on ``axmon.alert-acks``) for the firing alert.

Every transition publishes the alert's whole record to ``axmon.alerts`` (key: alert id). The
closing of windows depends only on the order of records in each partition, so a replay of the
same topics gives the same alerts, at the same times, with the same ids.

State (one entry per rule and series, in the worker's ``alerts`` table): the closed windows'
aggregates within the rule's window, the last evaluated window end, the open alert if any, the
cooldown's end and the last published record (republished to repair a crash).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any

from processor.folds.aggregate import Aggregate
from processor.folds.guard import Guard, StagedStore
from processor.folds.records import Emit, Store, Stream, json_emit
from processor.folds.rules import Rule, RuleSet
from processor.folds.windows import MetricWindow, series_id

_NAMESPACE = uuid.UUID("0c1f6a52-3f3e-4d8e-b0a4-8a1f2f4c9d11")
STATUSES = ("pending", "firing", "acknowledged", "resolved")
"""In the order an alert moves through them."""
STALE_RULE = "execution.stale"
"""The built-in rule of stale executions (liveness, judged on the wall clock)."""


def alert_id(rule: str, subject: str, since: int) -> str:
    """The id of the alert of ``rule`` on ``subject`` (a series, or an execution) that became
    pending at ``since``: the same in a replay."""
    return str(uuid.uuid5(_NAMESPACE, f"{rule}|{subject}|{since}"))


def state_key(rule: str, series: str) -> str:
    return f"r|{rule}|{series}"


def _ack_key(alert: str) -> str:
    return f"ack|{alert}"


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledgement, as published on ``axmon.alert-acks``."""

    alert_id: str
    rule: str
    series: str
    by: str
    at: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Ack:
        return cls(str(data["alert_id"]), str(data["rule"]), str(data["series"]), str(data.get("by") or ""), int(data["at"]))

    def to_json(self) -> dict[str, Any]:
        return {"alert_id": self.alert_id, "rule": self.rule, "series": self.series, "by": self.by, "at": self.at}


def _value(rule: Rule, aggregates: list[Aggregate]) -> float | None:
    merged = reduce(Aggregate.merge, aggregates, Aggregate())
    if merged.count == 0:
        return None
    value = merged.summary()[rule.aggregation]
    return None if value is None else float(value)


def _record(rule: Rule, window: MetricWindow, p: int, since: int, value: float | None) -> dict[str, Any]:
    tenant, metric_type, labels = window.series
    sid = series_id(window.series)
    return {
        "id": alert_id(rule.name, sid, since),
        "rule": rule.name,
        "kind": "threshold",
        "severity": rule.severity,
        "status": "pending",
        "tenant_id": tenant or None,
        "metric_type": metric_type,
        "labels": dict(labels),
        "series": sid,
        "execution_id": None,
        "aggregation": rule.aggregation,
        "operator": rule.operator,
        "threshold": rule.threshold,
        "resolve_threshold": rule.resolve_threshold,
        "window": rule.window_ms,
        "value": value,
        "pending_at": since,
        "fired_at": None,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "resolved_at": None,
        "at": since,
        "partition": p,
    }


class AlertCore:
    """Evaluates a :class:`RuleSet` on windows as they close; applies acks."""

    def __init__(self, store: Store, rules: RuleSet) -> None:
        self.store = StagedStore(store)
        self.rules = rules
        self.counters: dict[str, int] = {}
        self.guard = Guard([self.store], lambda: None, self.counters)
        """Runs an ack all or nothing (windows close inside the metrics core's guard)."""

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def window_closed(self, window: MetricWindow, p: int) -> list[Emit]:
        """Evaluate every rule watching ``window``'s series at its end."""
        tenant, metric_type, labels = window.series
        rules = self.rules.matching(tenant, metric_type, dict(labels))
        emits: list[Emit] = []
        for rule in rules:
            emits += self._evaluate(rule, window, p)
        return emits

    def _evaluate(self, rule: Rule, window: MetricWindow, p: int) -> list[Emit]:
        sid = series_id(window.series)
        key = state_key(rule.name, sid)
        entry = self.store.get(key) or {"w": {}, "t": None, "alert": None, "cool": None, "last": None, "p": p}
        if entry["t"] is not None and window.end <= entry["t"]:
            self._count("stale_window")  # closed before a newer one: already past it
            return []
        t = window.end
        horizon = t - rule.window_ms
        kept = {s: a for s, a in entry["w"].items() if int(s) >= horizon}
        if window.start >= horizon:
            kept[str(window.start)] = window.aggregate.to_json()
        value = _value(rule, [Aggregate.from_json(a) for a in kept.values()])
        self._count("evaluated")
        alert: dict[str, Any] | None = entry["alert"]
        cool: int | None = entry["cool"]
        out: list[dict[str, Any]] = []
        if alert is None:
            if rule.breached(value) and (cool is None or t >= cool):
                alert = _record(rule, window, p, t, value)
                out.append(alert)
                ack = self.store.get(_ack_key(alert["id"]))
                if rule.for_ms == 0:
                    alert = {**alert, "status": "firing", "fired_at": t, "at": t}
                    out.append(alert)
                    if ack is not None:
                        alert = self._acknowledged(alert, Ack.from_json(ack))
                        out.append(alert)
        elif alert["status"] == "pending":
            if not rule.breached(value):
                alert = {**alert, "status": "resolved", "resolved_at": t, "at": t, "value": value}
                out.append(alert)
            elif t - int(alert["pending_at"]) >= rule.for_ms:
                alert = {**alert, "status": "firing", "fired_at": t, "at": t, "value": value}
                out.append(alert)
                ack = self.store.get(_ack_key(alert["id"]))
                if ack is not None:
                    alert = self._acknowledged(alert, Ack.from_json(ack))
                    out.append(alert)
        elif not rule.still_breached(value):
            alert = {**alert, "status": "resolved", "resolved_at": t, "at": t, "value": value}
            out.append(alert)
            cool = t + rule.cooldown_ms
        if alert is not None and alert["status"] == "resolved":
            if self.store.get(_ack_key(alert["id"])) is not None:
                del self.store[_ack_key(alert["id"])]
            alert = None
        for record in out:
            self._count(f"to_{record['status']}")
        last = out[-1] if out else entry["last"]
        self.store[key] = {"w": kept, "t": t, "alert": alert, "cool": cool, "last": last, "p": p}
        return [json_emit(Stream.ALERTS, r["id"], r) for r in out]

    def _acknowledged(self, alert: dict[str, Any], ack: Ack) -> dict[str, Any]:
        if self.store.get(_ack_key(alert["id"])) is not None:
            del self.store[_ack_key(alert["id"])]
        return {**alert, "status": "acknowledged", "acknowledged_at": ack.at, "acknowledged_by": ack.by, "at": ack.at}

    def ack(self, ack: Ack) -> list[Emit]:
        """Acknowledge a firing alert. An ack for an alert that is not open here yet (a replay
        reads acks and samples in a different interleaving) waits for it; an ack for an alert
        that is no longer open changes nothing."""
        key = state_key(ack.rule, ack.series)
        entry = self.store.get(key)
        alert = None if entry is None else entry["alert"]
        if alert is not None and alert["id"] == ack.alert_id:
            if alert["status"] == "firing":
                alert = self._acknowledged(alert, ack)
                self.store[key] = {**entry, "alert": alert, "last": alert}
                self._count("to_acknowledged")
                return [json_emit(Stream.ALERTS, alert["id"], alert)]
            if alert["status"] == "acknowledged":
                self._count("ack_duplicate")
                return []
        past = entry is not None and entry["last"] is not None and entry["last"]["id"] == ack.alert_id
        if past and entry["last"]["status"] == "resolved":
            self._count("ack_resolved")
            return []
        self.store[_ack_key(ack.alert_id)] = ack.to_json()
        self._count("ack_waiting")
        return []

    def repair(self, p: int) -> list[Emit]:
        """After a crash: the last record of every alert of partition ``p`` again."""
        return [
            json_emit(Stream.ALERTS, entry["last"]["id"], entry["last"])
            for key, entry in self.store.items()
            if key.startswith("r|") and entry.get("p") == p and entry.get("last") is not None
        ]


def stale_alert(execution_id: str, tenant_id: str, since: int, p: int, *, resolved_at: int | None = None) -> dict[str, Any]:
    """The built-in alert of an execution with no event for the stale threshold (wall clock):
    firing from ``since``, resolved when an event arrives."""
    return {
        "id": alert_id(STALE_RULE, execution_id, since),
        "rule": STALE_RULE,
        "kind": "stale",
        "severity": "warning",
        "status": "firing" if resolved_at is None else "resolved",
        "tenant_id": tenant_id,
        "metric_type": None,
        "labels": {},
        "series": None,
        "execution_id": execution_id,
        "aggregation": None,
        "operator": None,
        "threshold": None,
        "resolve_threshold": None,
        "window": None,
        "value": None,
        "pending_at": since,
        "fired_at": since,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "resolved_at": resolved_at,
        "at": since if resolved_at is None else resolved_at,
        "partition": p,
    }


def status_rank(status: str) -> int:
    """Alerts only move forward through :data:`STATUSES`."""
    return STATUSES.index(status)
