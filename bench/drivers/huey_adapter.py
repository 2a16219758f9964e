"""Huey's producer side (SqliteHuey): ``add(x, y)`` enqueues, ``Result.get()`` waits.

Huey has no transactional bulk send: ``Task.map()`` enqueues one task per transaction,
and it is what W2 "bulk" measures for Huey (marked in the table). The W5 filler is
written straight into Huey's ``task`` table in one transaction, with messages made by
Huey's own serializer (untimed; it only has to be there).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

from bench.drivers.sqlstore import ResultCounter


class Adapter:
    bulk_api = "Task.map() (one transaction per task)"

    def __init__(self, workdir: str, options: dict[str, Any]) -> None:
        sys.path.insert(0, workdir)
        tasks = importlib.import_module("benchtasks")
        self.huey, self.add = tasks.huey, tasks.add
        self.db = options["db"]
        self.counter: ResultCounter | None = None

    def setup(self) -> None:
        self.huey.storage.initialize_schema()
        self.counter = ResultCounter(
            self.db, "SELECT count(*) FROM kv WHERE queue = ? AND key IN ({marks})",
            (self.huey.name,))

    def send(self, x: int, y: int) -> str:
        return str(self.add(x, y).id)

    def send_bulk(self, pairs: Sequence[tuple[int, int]]) -> list[str]:
        return [result.id for result in self.add.map(list(pairs))]

    def send_filler(self, n: int) -> None:
        huey = self.huey
        for start in range(0, n, 20_000):
            rows = [(huey.name, huey.serialize_task(self.add.s(i, i + 1)), 0)
                    for i in range(start, min(n, start + 20_000))]
            with huey.storage.db(commit=True) as cursor:
                cursor.executemany(
                    "INSERT INTO task (queue, data, priority) VALUES (?, ?, ?)", rows)

    def count_done(self, ids: Sequence[str]) -> int:
        assert self.counter is not None, "setup first"
        return self.counter.count(ids)

    def fetch(self, ids: Sequence[str]) -> list[Any]:
        return [self.huey.result(task_id, preserve=True) for task_id in ids]

    def call(self, x: int, y: int, timeout: float) -> Any:
        return self.add(x, y).get(blocking=True, timeout=timeout)

    def close(self) -> None:
        if self.counter is not None:
            self.counter.close()
