"""Helpers for integration tests: axmon child processes (started with the real CLI, killed for
real) and waiting for a condition."""

from __future__ import annotations

import time

from processor.ops.children import AxmonChild

AxmonProcess = AxmonChild


def wait_until(predicate: object, timeout: float, interval: float = 1.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
