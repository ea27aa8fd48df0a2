"""The SQLite store: the schema and its migrations (``db``), the sink's batch writer and
retention (``sinkdb``), the query API and its range planner (``queries``), the browsing queries
of ``axmon serve`` (``browse``) and the comparison of two databases (``dbdiff``).

May import: ``processor.folds`` (aggregates and sketches, to merge stored rollups), ``schemas``,
``processor.errors``, sqlite3. Never faust or aiokafka, nor the runtime, ops or CLI.
"""
