"""Alert rules: the file format, its validation and the condition arithmetic. Pure apart from
:func:`load_rules` reading the file.

A rules file is YAML (``.yaml``/``.yml``) or JSON: a list of rules, or ``{"rules": [...]}``::

    rules:
      - name: slow-api
        metric_type: api.request.duration
        aggregation: avg          # avg sum min max count p50 p95 p99
        operator: gt              # gt gte lt lte eq neq
        threshold: 1000
        window: 5m                # the span aggregated, ending at each closed window (ms or 30s/5m/1h)
        for: 2m                   # how long the condition holds before firing (default 0)
        resolve_threshold: 800    # hysteresis: resolves when the value no longer passes this
        cooldown: 10m             # no new alert within this after resolving (default 0)
        severity: warning         # info warning error critical
        labels: {endpoint: /v1/run}   # optional: every label must match
        tenant: acme              # optional: one tenant id, or a list of them
"""

from __future__ import annotations

import math
import operator as op
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from processor.errors import ConfigError
from processor.folds.timeparse import parse_duration_ms

AGGREGATIONS = ("avg", "sum", "min", "max", "count", "p50", "p95", "p99")
OPERATORS: Mapping[str, Callable[[float, float], bool]] = {
    "gt": op.gt, "gte": op.ge, "lt": op.lt, "lte": op.le, "eq": op.eq, "neq": op.ne,
}
SEVERITIES = ("info", "warning", "error", "critical")
_FIELDS = {
    "name", "metric_type", "aggregation", "operator", "threshold", "window", "for", "resolve_threshold",
    "cooldown", "severity", "labels", "tenant", "description",
}


class RulesError(ConfigError):
    """A rules file that cannot be used; the message names the rule and the field."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    metric_type: str
    aggregation: str
    operator: str
    threshold: float
    window_ms: int
    severity: str = "warning"
    for_ms: int = 0
    resolve_threshold: float | None = None
    cooldown_ms: int = 0
    labels: tuple[tuple[str, str], ...] = ()
    tenants: tuple[str, ...] = ()
    description: str = ""

    def matches(self, tenant_id: str, metric_type: str, labels: Mapping[str, str]) -> bool:
        """Whether a series (tenant ``""`` when none) is watched by this rule."""
        if metric_type != self.metric_type:
            return False
        if self.tenants and tenant_id not in self.tenants:
            return False
        return all(labels.get(k) == v for k, v in self.labels)

    def breached(self, value: float | None) -> bool:
        """The firing condition."""
        return value is not None and OPERATORS[self.operator](value, self.threshold)

    def still_breached(self, value: float | None) -> bool:
        """Whether a firing alert stays firing: the condition against the resolve threshold
        (hysteresis) when there is one. No data resolves nothing."""
        if value is None:
            return True
        limit = self.threshold if self.resolve_threshold is None else self.resolve_threshold
        return OPERATORS[self.operator](value, limit)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "metric_type": self.metric_type, "aggregation": self.aggregation,
            "operator": self.operator, "threshold": self.threshold, "window": self.window_ms,
            "severity": self.severity, "for": self.for_ms, "resolve_threshold": self.resolve_threshold,
            "cooldown": self.cooldown_ms, "labels": dict(self.labels), "tenant": list(self.tenants),
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    def matching(self, tenant_id: str, metric_type: str, labels: Mapping[str, str]) -> list[Rule]:
        return [r for r in self.rules if r.matches(tenant_id, metric_type, labels)]

    @property
    def longest_window_ms(self) -> int:
        return max((r.window_ms for r in self.rules), default=0)


def parse_rules(data: Any, *, origin: str = "rules") -> RuleSet:
    """Validate parsed YAML/JSON into a :class:`RuleSet`; every problem found is reported."""
    if isinstance(data, Mapping):
        unknown = set(data) - {"rules"}
        if unknown:
            raise RulesError(f"{origin}: unknown top-level key(s) {sorted(unknown)}; expected 'rules'")
        data = data.get("rules")
    if data is None:
        data = []
    if not isinstance(data, list):
        raise RulesError(f"{origin}: expected a list of rules (or {{'rules': [...]}}), not {type(data).__name__}")
    problems: list[str] = []
    rules: list[Rule] = []
    for n, raw in enumerate(data, 1):
        where = f"{origin}: rule {n}"
        if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
            where = f"{origin}: rule {n} ({raw['name']})"
        try:
            rules.append(_rule(raw, where))
        except RulesError as exc:
            problems.append(str(exc))
    names = [r.name for r in rules]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{origin}: the rule name {name!r} is used more than once")
    if problems:
        raise RulesError("\n".join(problems))
    return RuleSet(tuple(rules))


def load_rules(path: Path) -> RuleSet:
    """Read and validate a rules file (YAML or JSON by extension; JSON is also valid YAML)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesError(f"cannot read the rules file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = orjson.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the file's fault
        raise RulesError(f"{path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
    return parse_rules(data, origin=str(path))


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise RulesError(f"{where}: a rule is a mapping of fields, not {type(raw).__name__}")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise RulesError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_FIELDS)}")
    missing = [f for f in ("name", "metric_type", "aggregation", "operator", "threshold", "window") if f not in raw]
    if missing:
        raise RulesError(f"{where}: missing required field(s) {missing}")
    name = _text(raw, "name", where)
    if not name or any(c in name for c in " /\\"):
        raise RulesError(f"{where}: name must be non-empty without spaces or slashes, not {name!r}")
    aggregation = _choice(raw, "aggregation", AGGREGATIONS, where)
    operator = _choice(raw, "operator", tuple(OPERATORS), where)
    severity = _choice(raw, "severity", SEVERITIES, where) if "severity" in raw else "warning"
    threshold = _number(raw, "threshold", where)
    resolve = _number(raw, "resolve_threshold", where) if raw.get("resolve_threshold") is not None else None
    if resolve is not None and operator in ("eq", "neq"):
        raise RulesError(f"{where}: resolve_threshold needs an ordering operator (gt, gte, lt, lte), not {operator}")
    if resolve is not None and operator in ("gt", "gte") and resolve > threshold:
        raise RulesError(f"{where}: resolve_threshold {resolve} must not be above threshold {threshold} for {operator}")
    if resolve is not None and operator in ("lt", "lte") and resolve < threshold:
        raise RulesError(f"{where}: resolve_threshold {resolve} must not be below threshold {threshold} for {operator}")
    labels = raw.get("labels") or {}
    if not isinstance(labels, Mapping) or not all(isinstance(k, str) for k in labels):
        raise RulesError(f"{where}: labels must be a mapping of label name to value")
    tenant = raw.get("tenant")
    tenants: Sequence[Any] = () if tenant is None else [tenant] if isinstance(tenant, str) else tenant
    if not isinstance(tenants, list | tuple) or not all(isinstance(t, str) and t for t in tenants):
        raise RulesError(f"{where}: tenant must be a tenant id or a list of them")
    return Rule(
        name=name,
        metric_type=_text(raw, "metric_type", where),
        aggregation=aggregation,
        operator=operator,
        threshold=threshold,
        window_ms=_duration(raw, "window", where, minimum=1),
        severity=severity,
        for_ms=_duration(raw, "for", where, minimum=0) if "for" in raw else 0,
        resolve_threshold=resolve,
        cooldown_ms=_duration(raw, "cooldown", where, minimum=0) if "cooldown" in raw else 0,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        tenants=tuple(tenants),
        description=str(raw.get("description") or ""),
    )


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RulesError(f"{where}: {key} must be a non-empty string")
    return value.strip()


def _choice(raw: Mapping[str, Any], key: str, choices: tuple[str, ...], where: str) -> str:
    value = raw.get(key)
    if value not in choices:
        raise RulesError(f"{where}: {key} {value!r} is not one of {', '.join(choices)}")
    return str(value)


def _number(raw: Mapping[str, Any], key: str, where: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RulesError(f"{where}: {key} must be a number, not {value!r}")
    return float(value)


def _duration(raw: Mapping[str, Any], key: str, where: str, *, minimum: int) -> int:
    value = raw.get(key)
    if isinstance(value, bool):
        raise RulesError(f"{where}: {key} must be a duration (ms, or 30s, 5m, 1h), not {value!r}")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, str):
        if value.strip() == "0":
            ms = 0
        else:
            try:
                ms = parse_duration_ms(value)
            except ConfigError:
                raise RulesError(f"{where}: {key} {value!r} is not a duration (ms, or 30s, 5m, 1h)") from None
    else:
        raise RulesError(f"{where}: {key} must be a duration (ms, or 30s, 5m, 1h), not {value!r}")
    if ms < minimum:
        raise RulesError(f"{where}: {key} must be at least {minimum} ms, not {ms}")
    return ms
