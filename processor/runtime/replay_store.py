"""The table a core keeps its state in during a replay: compact, so that replay's memory is what
the folds must hold (open executions and windows, markers within their horizons), not a
multiple of it.

A :class:`~processor.folds.records.Store` whose entries are kept as their JSON bytes (the very
bytes :class:`~processor.folds.guard.StagedStore` made for its size check, so keeping them costs
no encoding), and whose most recently used entries are also kept decoded, so that an execution
or a window that takes event after event is not decoded again for each. A decoded entry is the
object the core stored (stored values are never mutated), so the cores' identity-keyed caches
(:meth:`processor.folds.lifecycle_core.LifecycleCore._state_of`) still hit.

A deleted entry is gone from both: nothing stays behind it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import orjson

HOT_ENTRIES = 8_192
"""Entries kept decoded besides their bytes (the most recently read or written)."""


class CompactStore:
    """See the module docstring."""

    def __init__(self, hot: int = HOT_ENTRIES) -> None:
        self._raw: dict[str, bytes] = {}
        self._hot: OrderedDict[str, Any] = OrderedDict()
        self._limit = max(1, hot)

    def get(self, key: str) -> Any:
        value = self._hot.get(key)
        if value is not None:
            self._hot.move_to_end(key)
            return value
        raw = self._raw.get(key)
        if raw is None:
            return None
        value = orjson.loads(raw)
        self._remember(key, value)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self.set_encoded(key, orjson.dumps(value), value)

    def set_encoded(self, key: str, raw: bytes, value: Any = None) -> None:
        self._raw[key] = raw
        if value is None:
            self._hot.pop(key, None)
        else:
            self._remember(key, value)

    def __delitem__(self, key: str) -> None:
        del self._raw[key]
        self._hot.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def __len__(self) -> int:
        return len(self._raw)

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every entry, decoded (without making the cold ones hot)."""
        for key, raw in list(self._raw.items()):
            value = self._hot.get(key)
            yield key, (value if value is not None else orjson.loads(raw))

    def _remember(self, key: str, value: Any) -> None:
        hot = self._hot
        hot[key] = value
        hot.move_to_end(key)
        if len(hot) > self._limit:
            hot.popitem(last=False)

    @property
    def encoded_bytes(self) -> int:
        """The JSON bytes held (a measure of the state's size)."""
        return sum(len(raw) for raw in self._raw.values())
