"""A Faust table as the folds' :class:`~processor.folds.records.Store`: str keys, JSON values
stored as raw bytes, each write to the changelog partition of the record that made it.

Writes go to the table's store directly, and their changelog records wait in
:attr:`TableStore.changelog` until the worker sends them with the app's producer at the end of
the batch (:meth:`processor.runtime.worker.Worker._publish`), before the batch's derived records.
Faust's own path (``Table.__setitem__`` -> ``on_key_set`` -> ``send_soon`` -> its producer
buffer -> ``publish_message``) costs ~0.15 ms per write here (``shared/FAUST.md``) and is
flushed by a buffer that gave up early (:func:`~processor.runtime.faust_patches.patch_faust_producer_buffer`).
The records are the same (raw key, raw value or a tombstone, the partition of the record that
made the write), so Faust recovers the table from them as before; the commit waits for them
like for any record sent (Faust flushes the producer before it commits)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import orjson

from processor.folds.decoded import DecodedCache

DECODED_KEPT = 4_096
"""At most this many decoded values are kept per table (then forgotten at once): two batches' worth."""


class TableStore:
    """A Faust table as a :class:`~processor.folds.records.Store`: str keys, JSON dict values,
    stored as raw bytes. Writes go through ``__setitem__``/``__delitem__`` only (never a
    mutation of a stored value); each one's changelog record is kept for the changelog
    partition :attr:`partition` names (set by the :class:`WriteBack` over it: the partition of
    the records whose writes they are) until :meth:`take_changelog` (see the module docstring)."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.partition: int | None = None
        self.changelog: list[tuple[int, bytes, bytes | None]] = []
        """(partition, key, value or ``None`` for a delete) of the writes not yet sent, in order."""
        self._decoded: DecodedCache[Any] = DecodedCache(DECODED_KEPT)
        """key -> (the stored bytes, their value): values are never mutated, so a read of the
        same bytes object returns the value without decoding it again."""

    def _partition_for_key(self, key: Any) -> int:
        if self.partition is None:
            raise RuntimeError(f"a write to table {self._table.name} with no partition to write it to")
        return self.partition

    @functools.cached_property
    def changelog_topic(self) -> str:
        return str(self._table.changelog_topic.get_topic_name())

    def take_changelog(self) -> list[tuple[int, bytes, bytes | None]]:
        """The changelog records of the writes since the last call, in order."""
        records, self.changelog = self.changelog, []
        return records

    def get(self, key: str) -> Any:
        raw = self._table.data.get(key.encode())
        if raw is None:
            return None
        value = self._decoded.get(key, raw)  # the very bytes decoded or written last
        if value is None:
            value = orjson.loads(raw)
            self._decoded.keep(key, raw, value)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self.set_encoded(key, orjson.dumps(value), value)

    def set_encoded(self, key: str, raw: bytes, value: Any = None) -> None:
        """``self[key] = value`` for a value already encoded (``raw == orjson.dumps(value)``;
        ``value`` may be left out)."""
        encoded = key.encode()
        self._table.data[encoded] = raw
        self.changelog.append((self._partition_for_key(encoded), encoded, raw))
        if value is not None:
            self._decoded.keep(key, raw, value)
        else:
            self._decoded.forget(key)

    def __delitem__(self, key: str) -> None:
        self._decoded.forget(key)
        encoded = key.encode()
        del self._table.data[encoded]
        self.changelog.append((self._partition_for_key(encoded), encoded, None))

    def items(self) -> Iterator[tuple[str, Any]]:
        for key, raw in list(self._table.data.items()):
            yield (key.decode() if isinstance(key, bytes) else str(key)), orjson.loads(raw)
