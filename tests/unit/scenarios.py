"""Hypothesis strategies for whole scenarios: executions with steps, retries, failures,
cancellations and updates; metric samples across series, windows, tenants and labels; any
unicode in ids and strings, values across a wide float range; then resends and any order.

Every event is built from a JSON object through the contract's decoder, so only valid events
are generated (an invalid one fails the test loudly)."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import strategies as st

from schemas.codec import event_from_dict
from schemas.events import LifecycleEvent, MetricRecorded
from schemas.limits import MAX_ABS_VALUE

VALUE_LIMIT = MAX_ABS_VALUE
"""The largest |value| generated: the contract's bound (beyond it a sample is dead-lettered as
``out_of_range``, which tests/unit/test_hostile_input.py covers)."""

TINY_VALUES = (0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 2.2250738585072014e-308, 1.0, -1.0)

UNICODE = st.characters(blacklist_categories=("Cs",))
"""Any code point a JSON string can hold (lone surrogates cannot be encoded)."""
texts = st.text(UNICODE, max_size=16)
ID_CHARS = st.characters(blacklist_categories=("Cs", "Cc"))
"""What an id or a label name may hold: any code point but control characters (the contract's
``ID_PATTERN``)."""
names = st.text(ID_CHARS, min_size=1, max_size=12)
values = st.one_of(
    st.floats(-VALUE_LIMIT, VALUE_LIMIT, allow_nan=False, allow_infinity=False),
    st.integers(-int(VALUE_LIMIT), int(VALUE_LIMIT)),
    st.sampled_from(TINY_VALUES),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | texts | st.builds(list) | st.builds(dict),
    lambda inner: st.lists(inner, min_size=1, max_size=3) | st.dictionaries(texts, inner, min_size=1, max_size=3),
    max_leaves=8,
)
metadata = st.dictionaries(texts, json_values, max_size=4)


trace_contexts = st.sampled_from((
    {}, {}, {},
    {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
    {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"},
    {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"},
))
"""Mostly none; else one of two engine trace contexts (an execution's events may alternate between
two, so that they disagree)."""


class _Ids:
    """Unique ids with unicode in them: a serial number makes them unique, the rest is drawn."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.serial = itertools.count()

    def __call__(self) -> str:
        return f"{next(self.serial)}-{self.draw(names)}"


@st.composite
def lifecycle_scenarios(draw: Any, max_executions: int = 6) -> list[LifecycleEvent]:
    """The lifecycle events of a few executions, with resends, in any order."""
    new_id = _Ids(draw)
    tenants = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    spread = draw(st.sampled_from((3, 200, 60_000)))  # small spreads make equal timestamps
    at = st.integers(100_000, 100_000 + spread)
    out: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, max_executions))):
        execution = {"tenant_id": draw(st.sampled_from(tenants)), "execution_id": new_id()}

        contexts = draw(st.lists(trace_contexts, min_size=1, max_size=2))  # one or two per execution

        def event(type_: str, **fields: Any) -> None:
            context = contexts[len(out) % len(contexts)]
            out.append({"type": type_, "version": 1, "event_id": new_id(), "occurred_at": draw(at), **execution,
                        **context, **fields})

        if draw(st.integers(0, 9)):  # sometimes the start never arrives
            event("execution.started", workflow_id=draw(names), workflow_name=draw(texts), user_id=draw(names),
                  steps_total=draw(st.integers(0, 20)), metadata=draw(metadata))
        for _ in range(draw(st.integers(0, 2))):
            update = draw(st.fixed_dictionaries({}, optional={
                "current_step": texts, "steps_total": st.integers(0, 20), "metadata": metadata}))
            event("execution.updated", **update)
        for _ in range(draw(st.integers(0, 4))):
            step = {"step_id": new_id()}
            if draw(st.integers(0, 9)):
                event("step.started", **step, step_key=draw(names), step_name=draw(texts))
            for outcome in draw(st.lists(st.sampled_from(("step.completed", "step.failed", "step.retried")), max_size=4)):
                if outcome == "step.completed":
                    done = draw(st.fixed_dictionaries({}, optional={
                        "tokens_used": st.integers(0, 10**9), "cost": st.floats(0, 1e6, allow_nan=False),
                        "input_size": st.integers(0, 10**9), "output_size": st.integers(0, 10**9)}))
                    event(outcome, **step, **done)
                elif outcome == "step.failed":
                    event(outcome, **step, error_message=draw(texts))
                else:
                    event(outcome, **step)
        for ending in draw(st.lists(st.sampled_from(("execution.completed", "execution.failed", "execution.cancelled")),
                                    max_size=2)):
            if ending == "execution.failed":
                event(ending, error_message=draw(texts))
            elif ending == "execution.cancelled":
                event(ending, **draw(st.fixed_dictionaries({}, optional={"reason": texts})))
            else:
                event(ending)
    resent = draw(st.lists(st.sampled_from(out), max_size=max(1, len(out) // 4))) if out else []
    ordered = draw(st.permutations(out + resent))
    return [_lifecycle(e) for e in ordered]


def _lifecycle(fields: dict[str, Any]) -> LifecycleEvent:
    event = event_from_dict(fields)
    assert isinstance(event, LifecycleEvent)
    return event


METRIC_TYPES = ("api.request.duration", "cpu.usage", "workflow.queue.length", "custom.hypothesis.metric")


@st.composite
def metric_scenarios(draw: Any, span_ms: int = 30_000, jitter_ms: int = 4_000) -> list[MetricRecorded]:
    """Samples of a few series (tenants, types, unicode labels) over ``span_ms``, with resends,
    in nearly time order: each shifted by up to ``jitter_ms`` (some beyond the grace: late)."""
    new_id = _Ids(draw)
    series = draw(st.lists(
        st.tuples(st.none() | names, st.sampled_from(METRIC_TYPES), st.dictionaries(names, texts, max_size=3)),
        min_size=1, max_size=4))
    out: list[tuple[int, MetricRecorded]] = []
    for _ in range(draw(st.integers(1, 60))):
        tenant, metric_type, labels = draw(st.sampled_from(series))
        fields: dict[str, Any] = {"type": "metric.recorded", "version": 1, "event_id": new_id(),
                                  "occurred_at": draw(st.integers(100_000, 100_000 + span_ms)),
                                  "metric_type": metric_type, "value": draw(values), "labels": labels}
        if tenant is not None:
            fields["tenant_id"] = tenant
        sample = event_from_dict(fields)
        assert isinstance(sample, MetricRecorded)
        out.append((sample.occurred_at + draw(st.integers(-jitter_ms, jitter_ms)), sample))
    resent = draw(st.lists(st.sampled_from(out), max_size=10))
    out += [(when + draw(st.integers(-jitter_ms, jitter_ms)), s) for when, s in resent]
    out.sort(key=lambda pair: pair[0])
    return [s for _, s in out]
