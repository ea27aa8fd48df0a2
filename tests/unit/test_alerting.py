"""Alert rules and the alert fold, without a broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.folds.aggregate import Aggregate
from processor.folds.alerting import Ack, AlertCore
from processor.folds.rules import RulesError, load_rules, parse_rules
from processor.folds.windows import MetricWindow

MIN = 60_000
SERIES = ("t1", "api.request.duration", (("endpoint", "/run"),))


def rules(**overrides: Any) -> Any:
    rule = {"name": "slow-api", "metric_type": "api.request.duration", "aggregation": "avg", "operator": "gt",
            "threshold": 1000, "window": "2m", "for": "2m", "resolve_threshold": 800, "cooldown": "5m",
            "severity": "warning"}
    return parse_rules({"rules": [{**rule, **overrides}]})


def window(minute: int, *values: float) -> MetricWindow:
    return MetricWindow(SERIES, minute * MIN, (minute + 1) * MIN, Aggregate.of(values))


def run(core: AlertCore, values: dict[int, float]) -> list[dict[str, Any]]:
    out = []
    for minute, value in sorted(values.items()):
        out += [orjson.loads(e.value) for e in core.window_closed(window(minute, value), 0)]  # type: ignore[arg-type]
    return out


def test_fires_after_for_resolves_below_the_resolve_threshold_and_honours_the_cooldown() -> None:
    core = AlertCore({}, rules())  # type: ignore[arg-type]
    # avg over 2 minutes: m0 500 | m1 1500 (avg 1000, not > 1000) | m2 1500 -> 1500 pending at 3m
    values = {0: 500, 1: 1500, 2: 1500, 3: 1500, 4: 1500, 5: 900, 6: 900, 7: 700, 8: 700, 9: 1500, 10: 1500, 11: 1500}
    out = run(core, values)
    moves = [(r["status"], r["at"] // MIN) for r in out]
    # (a window of minute m closes at m+1) pending at 3m; firing at 5m (held 2m); at 6m avg 1200 and at
    # 7m avg 900 stay above the resolve threshold 800; at 8m avg 800 -> resolved.
    # cooldown 5m from 8m: the breaches at 10m..12m open no alert before 13m
    assert moves == [("pending", 3), ("firing", 5), ("resolved", 8)]
    assert len({r["id"] for r in out}) == 1
    assert out[-1]["fired_at"] == 5 * MIN and out[-1]["resolved_at"] == 8 * MIN
    more = run(core, {12: 1500, 13: 1500, 14: 1500})
    assert [(r["status"], r["at"] // MIN) for r in more] == [("pending", 13), ("firing", 15)]
    assert more[0]["id"] != out[0]["id"]


def test_a_pending_alert_whose_condition_stops_resolves_without_firing() -> None:
    core = AlertCore({}, rules(window="1m"))  # type: ignore[arg-type]
    out = run(core, {0: 2000, 1: 100})
    assert [(r["status"], r["fired_at"]) for r in out] == [("pending", None), ("resolved", None)]


def test_for_zero_fires_at_once_and_an_early_ack_applies_when_it_fires() -> None:
    core = AlertCore({}, rules(**{"for": 0, "window": "1m"}))  # type: ignore[arg-type]
    first = run(core, {0: 2000})
    assert [r["status"] for r in first] == ["pending", "firing"]
    alert = first[-1]
    acked = [orjson.loads(e.value) for e in core.ack(Ack(alert["id"], "slow-api", alert["series"], "ops", 123))]  # type: ignore[arg-type]
    assert [(r["status"], r["acknowledged_by"], r["acknowledged_at"]) for r in acked] == [("acknowledged", "ops", 123)]
    assert core.ack(Ack(alert["id"], "slow-api", alert["series"], "ops", 124)) == []  # a duplicate ack
    resolved = run(core, {1: 100})
    assert resolved[-1]["status"] == "resolved" and resolved[-1]["acknowledged_by"] == "ops"


def test_an_ack_read_before_its_alert_exists_is_applied_when_it_fires() -> None:
    """A replay reads acks and samples in another interleaving than the live worker did."""
    live = AlertCore({}, rules(**{"for": 0, "window": "1m"}))  # type: ignore[arg-type]
    alert = run(live, {0: 2000})[-1]
    replayed = AlertCore({}, rules(**{"for": 0, "window": "1m"}))  # type: ignore[arg-type]
    assert replayed.ack(Ack(alert["id"], "slow-api", alert["series"], "ops", 5)) == []
    out = run(replayed, {0: 2000})
    assert [r["status"] for r in out] == ["pending", "firing", "acknowledged"]


def test_rules_filter_by_tenant_and_labels() -> None:
    assert rules(tenant="t1").matching("t1", "api.request.duration", {"endpoint": "/run"})
    assert not rules(tenant=["t2"]).matching("t1", "api.request.duration", {})
    assert not rules(labels={"endpoint": "/x"}).matching("t1", "api.request.duration", {"endpoint": "/run"})
    assert not rules().matching("t1", "other", {})


def test_quantile_and_count_aggregations() -> None:
    core = AlertCore({}, rules(aggregation="p99", threshold=50, resolve_threshold=None, window="1m", **{"for": 0}))  # type: ignore[arg-type]
    out = [orjson.loads(e.value) for e in core.window_closed(MetricWindow(SERIES, 0, MIN, Aggregate.of([1.0] * 98 + [100.0, 100.0])), 0)]  # type: ignore[arg-type]
    assert [r["status"] for r in out] == ["pending", "firing"] and out[-1]["value"] == 100.0


def test_repair_republishes_the_last_record() -> None:
    core = AlertCore({}, rules(**{"for": 0, "window": "1m"}))  # type: ignore[arg-type]
    last = run(core, {0: 2000})[-1]
    assert [orjson.loads(e.value) for e in core.repair(0)] == [last]  # type: ignore[arg-type]
    assert core.repair(1) == []


@pytest.mark.parametrize(
    "rule, message",
    [
        ({"operator": "bigger"}, "operator 'bigger' is not one of"),
        ({"aggregation": "median"}, "aggregation 'median'"),
        ({"threshold": "high"}, "threshold must be a number"),
        ({"window": "soon"}, "window 'soon' is not a duration"),
        ({"resolve_threshold": 1200}, "must not be above threshold"),
        ({"severity": "panic"}, "severity 'panic'"),
        ({"colour": "red"}, "unknown field(s) ['colour']"),
    ],
)
def test_invalid_rules_are_named_with_their_field(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(RulesError) as error:
        rules(**rule)
    assert "rule 1 (slow-api)" in str(error.value) and message in str(error.value)


def test_missing_fields_and_duplicate_names() -> None:
    with pytest.raises(RulesError, match=r"missing required field\(s\) \['metric_type'"):
        parse_rules([{"name": "x", "aggregation": "avg", "operator": "gt", "threshold": 1, "window": 1}])
    rule = {"name": "x", "metric_type": "m", "aggregation": "avg", "operator": "gt", "threshold": 1, "window": 1}
    with pytest.raises(RulesError, match="used more than once"):
        parse_rules([rule, rule])


def test_rules_files_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "rules.yaml"
    yaml_file.write_text("rules:\n  - name: slow\n    metric_type: api.request.duration\n    aggregation: avg\n"
                         "    operator: gt\n    threshold: 1000\n    window: 5m\n")
    assert load_rules(yaml_file).rules[0].window_ms == 300_000
    json_file = tmp_path / "rules.json"
    json_file.write_text(json.dumps([{"name": "x", "metric_type": "m", "aggregation": "count", "operator": "gte",
                                      "threshold": 3, "window": 60000}]))
    assert load_rules(json_file).rules[0].aggregation == "count"
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(RulesError, match="is not valid YAML"):
        load_rules(bad)
    with pytest.raises(RulesError, match="cannot read the rules file"):
        load_rules(tmp_path / "missing.yaml")
