"""The cyclic garbage collector's thresholds for folding processes.

Folding allocates millions of short-lived objects and hardly any cycles: with the default
thresholds (700, 10, 10) the collector runs about 10,000 times per million records, a tenth of
replay's CPU time (measured), and in the worker its full collections walk every table entry
and buffered record. Rarer collections cost memory only for garbage in cycles, which folds
hardly make.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

FOLDING_THRESHOLDS = (50_000, 20, 1_000)
"""``gc.set_threshold`` while folding (the worker for its life, replay while it reads)."""


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Rarer collections for the duration (:data:`FOLDING_THRESHOLDS`), then the thresholds again."""
    before = gc.get_threshold()
    gc.set_threshold(*FOLDING_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
