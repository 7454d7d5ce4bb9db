"""Reads that take a list of keys as one parameter, so the statement text never changes with the list's length.

SQLite gets the list as one JSON parameter (``json_each``) and answers in one row of JSON: the sqlite3 module hands
the interpreter lock back and forth for every row it steps, which under concurrent ingests costs more than the rows,
and a list passed whole spares compiling an expanding IN list for every batch size. PostgreSQL gets an array
parameter (``= ANY(...)``), so psycopg prepares the text once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

CHUNK = 5000
"""Keys per statement."""


def list_rows(
    connection: Connection, sqlite: str, postgresql: str | Callable[[int], str], name: str, values: Sequence[Any]
) -> list[Any]:
    """The rows for ``values``, a chunk at a time. ``sqlite`` takes the list as its one parameter and answers one row
    holding a JSON array of rows; ``postgresql`` (or a function of the chunk's length that picks it) takes it as the
    named array parameter ``name``."""
    rows: list[Any] = []
    for start in range(0, len(values), CHUNK):
        chunk = list(values[start : start + CHUNK])
        if connection.dialect.name == "postgresql":
            sql = postgresql(len(chunk)) if callable(postgresql) else postgresql
            rows.extend(connection.exec_driver_sql(sql, {name: chunk}).all())
        else:
            rows.extend(json.loads(connection.exec_driver_sql(sqlite, (json.dumps(chunk),)).scalar_one()))
    return rows
