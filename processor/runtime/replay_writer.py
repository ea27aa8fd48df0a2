"""The database a replay builds (``<db>.partial``), written by a thread of its own.

Replay folds on the event loop's thread and hands each finished :class:`SinkBatch` to
:class:`PartialDb`, whose one thread writes it with :func:`processor.store.sinkdb.write_batch`
while the folds go on with the next batch. SQLite lets go of the interpreter while it works
(``sqlite3_step``), so the B-tree work of a batch overlaps the folding of the next one on a
second core. The batches are written one at a time, in the order they were handed over: at
most one is being written while the next one fills, and :meth:`PartialDb.write` waits for the
previous write before it hands over the next. The connection lives on that thread alone (it is
opened, written and closed there), so no two threads ever use it.

The file is built without syncs and with the rollback journal in memory (a batch that fails is
still rolled back, so ``write_batch``'s record-by-record retry works as on the live path) and in
exclusive locking mode (nothing else opens a file that does not have its name yet). A crash
loses nothing that matters: the partial file is deleted and a replay starts again. When it is
complete, its journal is switched to ``DELETE`` (one self-contained file) and it is synced
before replay renames it.

The raw samples are counted once at the end, not row by row: ``metric_counts`` is a function of
the rows stored (see :mod:`processor.store.schema`), kept by the ``samples_counted`` trigger on
the live path, where it costs about as much as storing the sample. The partial file is built
without that trigger; :meth:`PartialDb.complete` counts the stored samples per metric type and
tenant (what the trigger would have left: nothing in a replay deletes a sample) and puts the
trigger back, so the file is the one the live sink would have written.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from processor.store.db import open_for_writing
from processor.store.sinkdb import SinkBatch, write_batch

log = logging.getLogger(__name__)

COUNTED_AT_THE_END = "samples_counted"
"""The trigger the partial file is built without (see the module docstring)."""
_COUNT_SAMPLES = (
    "INSERT INTO metric_counts(metric_type, tenant, samples) "
    "SELECT s.metric_type, COALESCE(s.tenant_id, ''), COUNT(*) FROM samples AS p JOIN series AS s ON s.id = p.series_id "
    "GROUP BY 1, 2"
)


class PartialDb:
    """See the module docstring. :meth:`close` always, :meth:`complete` when every batch is in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="replay-writer")
        self._pending: Future[None] | None = None
        self._closed = False
        try:
            self._conn, self._trigger = self._thread.submit(_open_partial, path).result()
        except BaseException:
            self._thread.shutdown()
            raise

    def write(self, batch: SinkBatch) -> None:
        """Hand ``batch`` over (nothing may change it after); raises what the previous write raised."""
        self.wait()
        self._pending = self._thread.submit(self._write, batch)

    def _write(self, batch: SinkBatch) -> None:
        for skipped in write_batch(self._conn, batch):
            log.error("left out a record that cannot be stored: %s", skipped)

    def wait(self) -> None:
        """Until the batch handed over last is written (raises what writing it raised)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def complete(self) -> None:
        """Every batch written: one self-contained file (journal ``DELETE``), closed and synced."""
        self.wait()
        self._thread.submit(_count_samples, self._conn, self._trigger).result()
        self._thread.submit(self._conn.execute, "PRAGMA journal_mode = DELETE").result()
        self.close()
        _fsync(self.path)

    def close(self) -> None:
        """Wait for a write under way (what it raised is left to :meth:`wait`), close the file."""
        if self._closed:
            return
        self._closed = True
        if self._pending is not None:
            self._pending.exception()
        self._thread.submit(self._conn.close).result()
        self._thread.shutdown()


def _open_partial(path: Path) -> tuple[sqlite3.Connection, str]:
    """The new file's connection, and the SQL of the trigger it is built without."""
    conn = open_for_writing(path)
    if not isinstance(conn, sqlite3.Connection):
        raise TypeError("replay builds a SQLite file")
    conn.execute("PRAGMA journal_mode = MEMORY")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    [(trigger,)] = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (COUNTED_AT_THE_END,))
    conn.execute(f"DROP TRIGGER {COUNTED_AT_THE_END}")
    return conn, str(trigger)


def _count_samples(conn: sqlite3.Connection, trigger: str) -> None:
    """The counts the trigger would have kept, and the trigger back, in one transaction."""
    conn.execute("BEGIN")
    try:
        conn.execute("DELETE FROM metric_counts")  # nothing counted them: none
        conn.execute(_COUNT_SAMPLES)
        conn.execute(trigger)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
