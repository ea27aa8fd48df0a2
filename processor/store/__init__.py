"""The store, on SQLite or PostgreSQL: the schema and its migrations (``db``), the sink's batch
writer and retention (``sinkdb``), the query API and its range planner (``queries``), the
browsing queries of ``axmon serve`` (``browse``) and the comparison of two databases (``dbdiff``).
Every module is written once against ``conn.Connection`` in SQLite's dialect; ``pgconn`` runs it
on PostgreSQL (``pgdialect`` translates), ``pgcopy`` copies a SQLite file into PostgreSQL.

May import: ``processor.folds`` (aggregates and sketches, to merge stored rollups), ``schemas``,
``processor.errors``, ``processor.urls``, sqlite3, psycopg. Never faust or aiokafka, nor the
runtime, ops or CLI.
"""
