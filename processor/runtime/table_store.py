"""A Faust table as the folds' :class:`~processor.folds.records.Store`: str keys, JSON values
stored as raw bytes, each write to the changelog partition of the record that made it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from processor.runtime.faust_patches import route_table_writes

DECODED_KEPT = 4_096
"""At most this many decoded values are kept per table (then forgotten at once): two batches' worth."""


class TableStore:
    """A Faust table as a :class:`~processor.folds.records.Store`: str keys, JSON dict values,
    stored as raw bytes. Writes go through ``__setitem__``/``__delitem__`` only, to the
    changelog partition :attr:`partition` names (set by the :class:`WriteBack` over it: the
    partition of the records whose writes they are, see :func:`route_table_writes`)."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.partition: int | None = None
        self._decoded: dict[str, tuple[bytes, Any]] = {}
        """key -> (the stored bytes, their value): values are never mutated, so a read of the
        same bytes object returns the value without decoding it again."""
        route_table_writes(table, self._partition_for_key)

    def _partition_for_key(self, key: Any) -> int:
        if self.partition is None:
            raise RuntimeError(f"a write to table {self._table.name} with no partition to write it to")
        return self.partition

    def get(self, key: str) -> Any:
        raw = self._table.get(key.encode())
        if raw is None:
            return None
        known = self._decoded.get(key)
        if known is not None and known[0] is raw:  # the very bytes decoded or written last
            return known[1]
        value = orjson.loads(raw)
        self._remember(key, raw, value)
        return value

    def _remember(self, key: str, raw: bytes, value: Any) -> None:
        if len(self._decoded) >= DECODED_KEPT:
            self._decoded.clear()
        self._decoded[key] = (raw, value)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set_encoded(key, orjson.dumps(value), value)

    def set_encoded(self, key: str, raw: bytes, value: Any = None) -> None:
        """``self[key] = value`` for a value already encoded (``raw == orjson.dumps(value)``;
        ``value`` may be left out)."""
        self._table[key.encode()] = raw
        if value is not None:
            self._remember(key, raw, value)
        else:
            self._decoded.pop(key, None)

    def __delitem__(self, key: str) -> None:
        self._decoded.pop(key, None)
        del self._table[key.encode()]

    def items(self) -> Iterator[tuple[str, Any]]:
        for key, raw in list(self._table.items()):
            yield (key.decode() if isinstance(key, bytes) else str(key)), orjson.loads(raw)
