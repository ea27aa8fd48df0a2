"""axmon's benchmarks: ``python -m bench`` (``make bench``).

Every benchmark is a :class:`~bench.common.Benchmark`: a name, a title, a method text and a
``run`` function that takes a :class:`~bench.common.BenchContext` (the broker, the size) and
returns a :class:`~bench.common.Report` of figures. :func:`registered` lists them in the order
``python -m bench`` runs them; a new benchmark is a module with a ``BENCHMARK`` and one line
here.
"""

from __future__ import annotations

from bench.common import Benchmark


def registered() -> tuple[Benchmark, ...]:
    """Every benchmark, in running order (their modules are imported on the first call)."""
    from bench import e2e, producer, queries, replay, sink, worker, workers

    return (producer.BENCHMARK, worker.BENCHMARK, workers.BENCHMARK, sink.BENCHMARK, e2e.BENCHMARK, queries.BENCHMARK, replay.BENCHMARK)


__all__ = ["registered"]
