"""A replay folded by several processes, one share of the partitions each, written by one.

The source partitions are independent in a replay (:mod:`processor.runtime.replay_fold`: every
key is folded on its home partition only, stream times and lateness are per partition, an
alert's ack is read with its metrics partition, and the derived samples are read back, not
derived again), so ``n`` spawned fold processes each take the partitions ``p`` with
``p % n == k`` of every source topic and fold them exactly as one process would, each with its
own cores and its own scratch file (``<db>.partial-state-<k>``). They send their full batches
(``FLUSH_EVERY`` records) through a pipe to the replaying process, whose writer
(:class:`~processor.runtime.replay_writer.PartialDb`) writes them one at a time, in the order
they arrive. A pipe holds little, so a fold process that runs ahead waits for the writer:
memory stays bounded (a batch being written, one being received, one being filled per process).

The database is the same as one process makes: each partition's batches are written in its
offset order, and what the sink derives from a batch (executions' counters from their old and
new status, the rollup tiers from the stored windows) does not depend on how the batches of
different partitions interleave (the live sink meets them interleaved any way too).

A fold process that fails sends its exception, and the replay raises it after stopping the
others; one that dies without a word (killed) makes the replay fail too.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import resource
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from processor.errors import AxmonError
from processor.runtime.collector import fewer_collections
from processor.runtime.replay_fold import Rebuild, read_sources
from processor.runtime.replay_plan import ReplayPlan, ReplayProgress
from processor.runtime.replay_state import SpillFile
from processor.runtime.replay_writer import PartialDb
from processor.settings import Settings
from processor.store.sinkdb import SinkBatch

log = logging.getLogger(__name__)


class FoldProcessError(AxmonError):
    """A replay's fold process ended without finishing its share (killed, or out of memory)."""


Folded = tuple[int, dict[str, int], int]
"""What folding did: the records read, the rows written by kind, the fold processes' peak RSS
(KiB, together)."""


def state_path(state: Path, k: int) -> Path:
    """The scratch file of fold process ``k``."""
    return state.with_name(f"{state.name}-{k}")


async def fold_in_workers(settings: Settings, bootstrap: str, plan: ReplayPlan, workers: int, db: PartialDb, state: Path,
                          on_progress: Callable[[ReplayProgress], None] | None, began: float) -> Folded:
    """Fold every source partition in ``workers`` processes; their batches go to ``db``."""
    context = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    pipes: dict[Connection, int] = {}
    try:
        for k in range(workers):
            ours, theirs = context.Pipe(duplex=False)
            process = context.Process(target=_fold_share, name=f"axmon-replay-fold-{k}", daemon=True,
                                      args=(settings, bootstrap, plan, (k, workers), state_path(state, k), theirs))
            process.start()
            theirs.close()
            processes.append(process)
            pipes[ours] = k
        done, total = [0] * workers, [0] * workers
        records, peak = 0, 0
        counts = {"executions": 0, "samples": 0, "rollups": 0, "dead_letters": 0}
        loop = asyncio.get_running_loop()
        with fewer_collections():
            while pipes:
                ready: list[Any] = await loop.run_in_executor(None, wait, list(pipes), 1.0)
                for pipe in ready:
                    k = pipes[pipe]
                    try:
                        message: tuple[str, Any] = pipe.recv()
                    except EOFError:
                        raise FoldProcessError(f"replay's fold process {k} ended without finishing "
                                               f"(exit code {processes[k].exitcode})") from None
                    kind, payload = message
                    if kind == "batch":
                        db.write(payload)
                    elif kind == "progress":
                        done[k], total[k] = payload
                        if on_progress is not None:
                            on_progress(ReplayProgress(sum(done), sum(total), time.monotonic() - began))
                    elif kind == "done":
                        n, their_counts, their_peak = payload
                        records += n
                        peak += their_peak
                        for name, value in their_counts.items():
                            counts[name] += value
                        del pipes[pipe]
                        pipe.close()
                    else:
                        exc, text = payload
                        log.debug("replay's fold process %d failed:\n%s", k, text)
                        raise exc
        return records, counts, peak
    finally:
        for pipe in pipes:
            pipe.close()
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()


def _fold_share(settings: Settings, bootstrap: str, plan: ReplayPlan, share: tuple[int, int], state: Path,
                pipe: Connection) -> None:
    """A fold process: fold ``share`` and send its batches, progress and outcome up ``pipe``."""
    try:
        spill = SpillFile(state)
        try:
            def send(batch: SinkBatch) -> None:
                pipe.send(("batch", batch))

            def progress(p: ReplayProgress) -> None:
                pipe.send(("progress", (p.done, p.total)))

            rebuild = Rebuild(settings, plan, send, spill)
            with fewer_collections():
                records = asyncio.run(read_sources(settings, bootstrap, plan, rebuild, progress, time.monotonic(), share))
        finally:
            spill.close()
        pipe.send(("done", (records, rebuild.counts, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
    except BaseException as exc:  # noqa: BLE001 - the replaying process raises it
        text = traceback.format_exc()
        try:
            pipe.send(("error", (exc, text)))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            pipe.send(("error", (FoldProcessError(f"{type(exc).__name__}: {exc}"), text)))
    finally:
        pipe.close()
