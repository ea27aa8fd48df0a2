"""The store's connection: SQLite's, or PostgreSQL's through :mod:`processor.store.pgconn`.

Every module of the store is written once against this type: the part of ``sqlite3``'s
interface that both implement (``execute``, ``executemany``, ``cursor``, ``close``,
``total_changes``; rows by position and by name; ``sqlite3``'s exception classes), in SQLite's
dialect, which :class:`processor.store.pgconn.PgConnection` translates.
"""

from __future__ import annotations

import sqlite3

from processor.store.pgconn import PgConnection

Connection = sqlite3.Connection | PgConnection
