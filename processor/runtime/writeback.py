"""One batch of records, written back once: every key a batch changes is written to the table
once, and each partition's writes of a batch persist all or nothing. Pure (no Faust).

A :class:`WriteBack` is a :class:`~processor.folds.records.Store` over the real table. The cores fold
a batch of records into it one by one (each record all or nothing, inside its
:class:`~processor.folds.guard.Guard`); reads see what the batch wrote so far. :meth:`WriteBack.flush`
then hands, per partition, the net writes of the batch to the table: one write per key.

**All or nothing per partition.** A table's changelog partition persists its records as a
prefix (a crash keeps the first ones). Record by record, that is what the cores rely on: the
state after a crash is the state after some prefix of the records, so a redelivered record
finds its own writes or none, and stream time recovered from the entries is the stream time
at the first record not applied. The net writes of a batch are not in that order (a key written
by the first and the last record is written once), so a prefix of them is no such state. So a
partition's writes are framed by a *write-ahead record*: the first write is the key
:func:`wal_key` holding every write of the batch, the last one deletes it. After a crash,
either the write-ahead record did not persist (then nothing after it did: the partition is as
before the batch) or it did: then :meth:`WriteBack.recover` finds it and writes the whole batch
again (rolling forward), before anything reads that partition. Writes that were not reordered need no frame
(a batch that wrote no key of the partition twice: its net writes are its writes, in order),
nor can writes too large for one record have one (see :meth:`WriteBack.flush`): those are
written in the order they were made, which persists as a prefix as without batches.

**Writes out of record order.** A core may defer a write to later in the batch (the metrics
core writes each window a batch changed once, at its end: :meth:`WriteBack.begin_reordered`).
Then a prefix of the partition's writes is no prefix of its records, so that partition's writes
are always framed. The core keeps such a batch small enough for one frame: it flushes before
any write it makes at once (:meth:`WriteBack.flush` between records is always legal), and the
caller flushes once the deferred writes and those waiting reach :data:`FLUSH_BYTES`.

Each write is attributed to the partition of the record being folded (:attr:`WriteBack.partition`):
every key is folded on its home partition only (:mod:`processor.folds.routing`), so it is the
partition the entry's ``p`` names, and the changelog partition it is written to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from schemas.limits import MAX_RECORD_BYTES

logger = logging.getLogger(__name__)

WAL_PREFIX = "\x00wal/"


def wal_key(partition: int) -> str:
    """The key of a partition's write-ahead record (hidden from the cores)."""
    return f"{WAL_PREFIX}{partition}"


FLUSH_BYTES = 256 * 1024
"""Flush once this many bytes of writes wait: a partition's write-ahead record stays well
below a Kafka record's limit (a record's own writes may add up to that limit again; then the
frame is left out, see :meth:`WriteBack.flush`)."""

_GONE = None


class WriteBack:
    """See the module docstring. ``inner`` takes ``set_encoded`` (raw JSON bytes), and its
    writes go to the changelog partition ``inner.partition`` names at the time (the runtime's
    :class:`~processor.runtime.table_store.TableStore`; a plain attribute elsewhere)."""

    def __init__(self, inner: Any, *, frame_limit: int = MAX_RECORD_BYTES) -> None:
        self.inner = inner
        self.frame_limit = frame_limit
        self.partition: int | None = None
        """The partition of the record being folded: its writes belong to it."""
        self._pending: dict[str, tuple[int, bytes | None, Any]] = {}
        """key -> (partition, encoded value or ``None`` for a deletion, the value decoded or
        ``None``): the net writes."""
        self._log: list[tuple[int, str, bytes | None]] = []
        """Every write in the order made: what a partition writes when its frame is too large."""
        self.pending_bytes = 0
        self.written = 0
        """Table writes made by every flush so far."""
        self._reordered: set[int] = set()
        """Partitions whose writes of this batch are not in the order of their records."""
        self._recovered: set[int] = set()

    # -- the Store protocol ------------------------------------------------------------------

    def get(self, key: str) -> Any:
        change = self._pending.get(key)
        if change is not None:
            if change[1] is _GONE:
                return None
            return change[2] if change[2] is not None else orjson.loads(change[1])
        return None if key.startswith(WAL_PREFIX) else self.inner.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set_encoded(key, orjson.dumps(value), value)

    def set_encoded(self, key: str, raw: bytes, value: Any = None) -> None:
        """``self[key] = value`` for a value already encoded (``raw == orjson.dumps(value)``;
        ``value`` may be left out)."""
        self._put(key, raw, value)

    def __delitem__(self, key: str) -> None:
        if self.get(key) is None:
            raise KeyError(key)
        self._put(key, _GONE)

    def items(self) -> Iterator[tuple[str, Any]]:
        pending = self._pending
        for key, value in self.inner.items():
            if key.startswith(WAL_PREFIX) or key in pending:
                continue
            yield key, value
        for key, (_, raw, value) in list(pending.items()):
            if raw is not _GONE:
                yield key, value if value is not None else orjson.loads(raw)

    def _put(self, key: str, raw: bytes | None, value: Any = None) -> None:
        p = self.partition
        if p is None:
            raise RuntimeError("a write outside of a record: no partition to write it to")
        self._pending[key] = (p, raw, value)
        self._log.append((p, key, raw))
        self.pending_bytes += len(key) + (0 if raw is None else len(raw))

    # -- batches ---------------------------------------------------------------------------

    def begin(self, partition: int) -> None:
        """A record of ``partition`` is about to be folded: its writes belong to it."""
        self.partition = partition

    def begin_reordered(self, partition: int) -> None:
        """The writes that follow are ``partition``'s, made later than the records they belong to
        (deferred to the batch's end): that partition's batch is framed."""
        self.partition = partition
        self._reordered.add(partition)

    @property
    def full(self) -> bool:
        """Enough waits that the batch should be flushed now (between two records)."""
        return self.pending_bytes >= FLUSH_BYTES

    def recover(self, partitions: Iterable[int]) -> int:
        """Roll forward the batch a crash interrupted, on each of ``partitions`` whose
        write-ahead record persisted: its writes become pending again (the next flush writes
        them, framed again); returns how many partitions had one. Once per partition after a
        (re)start or a rebalance (:meth:`forget`); call it before anything reads them."""
        rolled = 0
        previous = self.partition
        for p in partitions:
            if p in self._recovered:
                continue
            self._recovered.add(p)
            frame = self.inner.get(wal_key(p))
            if not isinstance(frame, dict) or not isinstance(frame.get("wal"), list):
                continue
            rolled += 1
            self.partition = p
            for key, value in frame["wal"]:
                if not str(key).startswith(WAL_PREFIX):
                    self._put(str(key), None if value is None else orjson.dumps(value), value)
            self._put(wal_key(p), _GONE)
        self.partition = previous
        return rolled

    def forget(self) -> None:
        """After a rebalance: look for interrupted batches again."""
        self._recovered.clear()

    def _take(self) -> tuple[dict[str, tuple[int, bytes | None, Any]], list[tuple[int, str, bytes | None]]]:
        """What waits (the net writes and the log), leaving nothing waiting."""
        pending, log = self._pending, self._log
        self._pending, self._log, self.pending_bytes = {}, [], 0
        return pending, log

    def _take_reordered(self) -> set[int]:
        reordered, self._reordered = self._reordered, set()
        return reordered

    def flush(self) -> int:
        """Write what waits to ``inner``, partition by partition (``inner.partition`` is set to
        each before its writes). A partition's writes are
        framed by its write-ahead record when the batch wrote one of its keys more than once
        (else they go as they were made, which persists as a prefix of them); when the frame would be larger than a record may
        be, that partition's writes are made one by one in the order they were made instead
        (each record's writes persist as a prefix then, as without batches). A partition written
        out of record order (:meth:`begin_reordered`) is always framed. Returns the number of
        table writes (also added to :attr:`written`)."""
        pending, log = self._take()
        reordered = self._take_reordered()
        by_partition: dict[int, list[tuple[str, bytes | None, Any]]] = {}
        for key, (p, raw, value) in pending.items():
            if not key.startswith(WAL_PREFIX):
                by_partition.setdefault(p, []).append((key, raw, value))
        rolled = {p for key, (p, _, _) in pending.items() if key.startswith(WAL_PREFIX)}
        written: dict[int, int] = {}
        for p, _, _ in log:
            written[p] = written.get(p, 0) + 1
        writes = 0
        for p in sorted(by_partition.keys() | rolled):
            changes = by_partition.get(p, [])
            self.inner.partition = p
            if p not in rolled and p not in reordered and written.get(p, 0) == len(changes):
                # no key written twice: the net writes are the writes in the order made (a key
                # keeps the place of its first write), and persist as a prefix of them
                writes += sum(self._write(key, raw, value) for key, raw, value in changes)
                continue
            frame = _frame(changes)
            if len(frame) <= self.frame_limit:
                self.inner.set_encoded(wal_key(p), frame)
                writes += 1 + sum(self._write(key, raw, value) for key, raw, value in changes)
            else:
                if p in reordered:
                    logger.warning("partition %d: %d bytes of writes made out of record order are too large for "
                                 "one frame; written unframed", p, len(frame))
                writes += sum(self._write(key, raw) for q, key, raw in log if q == p and not key.startswith(WAL_PREFIX))
            writes += self._write(wal_key(p), _GONE)
        self.written += writes
        return writes

    def _write(self, key: str, raw: bytes | None, value: Any = None) -> int:
        if raw is not _GONE:
            self.inner.set_encoded(key, raw, value)
            return 1
        try:
            del self.inner[key]
        except KeyError:
            return 0  # made and deleted within the batch
        return 1


def _frame(changes: list[tuple[str, bytes | None, Any]]) -> bytes:
    """The write-ahead record of a partition's writes: ``{"wal": [[key, value or null], ...]}``,
    built from the encoded values as they are."""
    parts = [b"[" + orjson.dumps(key) + b"," + (b"null" if raw is None else raw) + b"]" for key, raw, _ in changes]
    return b'{"wal":[' + b",".join(parts) + b"]}"

