"""processor.folds.frozen.replacer: the same copies as dataclasses.replace."""

from __future__ import annotations

import dataclasses

import pytest

from processor.folds.execution import ExecutionState, Reg, StepState
from processor.folds.frozen import replacer


def test_a_replacer_copies_as_dataclasses_replace_does() -> None:
    state = ExecutionState("e", tenant=Reg(1, "a", "t"), steps={"s": StepState("s")}, last_event_at=3)
    replace_state = replacer(ExecutionState)
    for changes in ({}, {"last_event_at": 9}, {"tenant": None, "endings": frozenset({(1, "b", "completed")})}):
        copy = replace_state(state, **changes)
        assert copy == dataclasses.replace(state, **changes) and copy is not state
        assert type(copy) is ExecutionState


def test_a_replacer_refuses_unknown_fields_and_records_with_fields_outside_init() -> None:
    with pytest.raises(TypeError, match="no field"):
        replacer(StepState)(StepState("s"), attempt=1)

    @dataclasses.dataclass(frozen=True)
    class Hidden:
        a: int
        b: int = dataclasses.field(default=0, init=False)

    with pytest.raises(TypeError, match="outside __init__"):
        replacer(Hidden)
