"""The pure folds: events in, state and derived records out, the same whatever the order,
duplicates or redeliveries of the events.

Executions and their steps (``execution``), metric windows with their aggregates and sketches
(``windows``, ``aggregate``, ``sketch``), per-tenant workflow stats (``stats``), derived samples
(``derived``), alert rules and alert state (``rules``, ``alerting``), the records a fold emits
and the store it folds into (``records``, ``guard``), which partition a record belongs to
(``routing``), durations and times (``timeparse``), and the processing cores that put them
together per input stream (``cores``), with their defaults in one config.

May import: ``schemas``, ``processor.errors`` and each other. Never faust, aiokafka or sqlite3,
nor any other ``processor`` package: the runtime and the store build on the folds, not the
other way round (``tests/unit/test_layers.py``).
"""
