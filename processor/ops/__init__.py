"""Operating axmon on one machine: the local Kafka broker from Maven Central jars
(``localbroker``), child processes (``children``), health (``health``, probed by
``health_probe``), waiting for a pipeline to settle (``settle``), the demo (``demo``) and the
live-equals-replay proof (``proof``).

May import: ``processor.runtime``, ``processor.store``, ``processor.folds``,
``processor.settings``, ``processor.errors``, ``schemas``, ``producers``. Never the CLI.
"""
