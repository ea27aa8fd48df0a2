"""One record's fold, all or nothing: no exception raised while folding one record stops the
stream. Pure (no I/O but a log line).

A core's stores are :class:`StagedStore` s: the writes of one record are held back and reach the
real table only when the fold returned and everything it made fits in a Kafka record. When the
fold raises instead (or makes a record too large to publish), its writes are dropped, the core
forgets what it cached from the store (its caches are rebuilt from the store, as after a
restart), and the record becomes a dead letter with reason ``processing_error``: the exception's
type and message, and the record's origin. Its offset is then done like any other's, so it is
not redelivered for ever.

The worker and replay run the same guard around the same cores, and the outcome depends only on
the state and the record, so a replay makes the same decision (the same dead letter; the detail
names no sizes, as the worker's table entries carry a few wall-clock bytes that replay's do not).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson

from processor.folds.records import Emit, Origin, Store, dead_letter
from schemas.limits import MAX_RECORD_BYTES

log = logging.getLogger(__name__)

PROCESSING_ERROR = "processing_error"
"""The dead-letter reason, and the counter, of a record whose fold raised."""

_GONE = object()


class RecordTooLarge(Exception):
    """The fold made a table entry or a derived record larger than a Kafka record may be."""


class StagedStore:
    """A :class:`~processor.folds.records.Store` over another one. Between :meth:`begin` and
    :meth:`commit` (which applies them in the order they were made) or :meth:`rollback` (which
    drops them), writes wait; reads see them. Outside, writes go straight through."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.staging = False
        self._pending: dict[str, Any] = {}
        self._log: list[tuple[str, Any]] = []

    def begin(self) -> None:
        self.staging = True

    def get(self, key: str) -> Any:
        if self._pending:
            value = self._pending.get(key, None)
            if value is _GONE:
                return None
            if value is not None:
                return value
        return self.inner.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if not self.staging:
            self.inner[key] = value
            return
        encoded = orjson.dumps(value)
        if len(encoded) > MAX_RECORD_BYTES:
            raise RecordTooLarge(f"the table entry {key[:80]!r} would be larger than {MAX_RECORD_BYTES} bytes")
        self._pending[key] = value
        self._log.append((key, (value, encoded)))

    def encoded_size(self, key: str) -> int | None:
        """The JSON size of ``key``'s value written in this record's fold (0 if it was deleted;
        ``None`` if it was not written)."""
        for written, change in reversed(self._log):
            if written == key:
                return 0 if change is _GONE else len(change[1])
        return None

    def __delitem__(self, key: str) -> None:
        if not self.staging:
            del self.inner[key]
            return
        if self.get(key) is None:
            raise KeyError(key)
        self._pending[key] = _GONE
        self._log.append((key, _GONE))

    def items(self) -> Iterator[tuple[str, Any]]:
        if not self._pending:
            yield from self.inner.items()
            return
        pending = dict(self._pending)
        for key, value in self.inner.items():
            if key in pending:
                value = pending.pop(key)
                if value is _GONE:
                    continue
            yield key, value
        for key, value in pending.items():
            if value is not _GONE:
                yield key, value

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StagedStore):
            return dict(self.items()) == dict(other.items())
        if isinstance(other, dict):
            return dict(self.items()) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def commit(self) -> None:
        set_encoded = getattr(self.inner, "set_encoded", None)
        for key, change in self._log:
            if change is _GONE:
                del self.inner[key]
            elif set_encoded is not None:
                set_encoded(key, change[1], change[0])  # a store that keeps JSON bytes takes them as they are
            else:
                self.inner[key] = change[0]
        self.rollback()

    def rollback(self) -> None:
        self.staging = False
        self._pending.clear()
        self._log.clear()


class Guard:
    """Runs one record's fold all or nothing over ``stores``; see the module docstring."""

    def __init__(self, stores: Sequence[StagedStore], forget: Callable[[], None], counters: dict[str, int]) -> None:
        self.stores = tuple(stores)
        self.forget = forget
        self.counters = counters
        """The core's counters: a failed fold's counts are undone and ``processing_error`` counted."""

    def run(self, fold: Callable[[], list[Emit]], origin: Origin, key: bytes | None, raw: bytes | None) -> list[Emit]:
        counted = dict(self.counters)
        for store in self.stores:
            store.begin()
        try:
            emits = fold()
            for emit in emits:
                size = len(emit.value or b"") + len(emit.key or b"")
                if size > MAX_RECORD_BYTES:
                    raise RecordTooLarge(f"its {emit.stream.value} record would be larger than {MAX_RECORD_BYTES} bytes")
        except Exception as exc:  # noqa: BLE001 - whatever one record does, the stream goes on
            for store in self.stores:
                store.rollback()
            self.forget()
            self.counters.clear()
            self.counters.update(counted)
            self.counters[PROCESSING_ERROR] = self.counters.get(PROCESSING_ERROR, 0) + 1
            detail = f"{type(exc).__name__}: {exc}"[:2000]
            log.error("processing error at %s/%d/%d: %s", origin.topic, origin.partition, origin.offset, detail,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            return [dead_letter(PROCESSING_ERROR, detail, origin, key, raw)]
        for store in self.stores:
            store.commit()
        return emits
