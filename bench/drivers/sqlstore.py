"""Cheap reads of a SQLite result store, for polling completion without the API's cost."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

CHUNK = 500


class ResultCounter:
    """Counts which of many ids have a row in a results table.

    Example:
        >>> counter = ResultCounter("tasks.db", "SELECT count(*) FROM results "
        ...                         "WHERE task_id IN ({marks})")  # doctest: +SKIP
    """

    def __init__(self, path: str, query: str, params: Sequence[object] = ()) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self.query = query
        self.params = tuple(params)

    def count(self, ids: Sequence[str]) -> int:
        total = 0
        for start in range(0, len(ids), CHUNK):
            chunk = list(ids[start:start + CHUNK])
            sql = self.query.format(marks=",".join("?" * len(chunk)))
            total += self.conn.execute(sql, (*self.params, *chunk)).fetchone()[0]
        return int(total)

    def close(self) -> None:
        self.conn.close()
