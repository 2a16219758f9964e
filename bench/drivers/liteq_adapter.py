"""liteq's producer side: ``add.delay()``, ``group(...).apply_async()``, ``get()``.

The app and task come from the run's generated ``benchtasks.py``, the module the
workers import with ``-A benchtasks``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

from bench.drivers.sqlstore import ResultCounter


class Adapter:
    bulk_api = "group(...).apply_async()"

    def __init__(self, workdir: str, options: dict[str, Any]) -> None:
        sys.path.insert(0, workdir)
        tasks = importlib.import_module("benchtasks")
        self.app, self.add = tasks.app, tasks.add
        self.db = options.get("db")  # None: not on SQLite (count through the API)
        self.counter: ResultCounter | None = None

    def setup(self) -> None:
        self.app.broker.open()  # creates the schema before any worker starts
        if self.db:
            self.counter = ResultCounter(
                self.db, "SELECT count(*) FROM liteq_results WHERE state = 'SUCCESS' "
                "AND task_id IN ({marks})")

    def send(self, x: int, y: int) -> str:
        return str(self.add.delay(x, y).id)

    def send_bulk(self, pairs: Sequence[tuple[int, int]]) -> list[str]:
        from liteq import group

        result = group(self.add.s(x, y) for x, y in pairs).apply_async()
        return [r.id for r in result.results]

    def send_filler(self, n: int) -> None:
        for start in range(0, n, 20_000):
            self.send_bulk([(i, i + 1) for i in range(start, min(n, start + 20_000))])

    def count_done(self, ids: Sequence[str]) -> int:
        if self.counter is not None:
            return self.counter.count(ids)
        return sum(1 for task_id in ids if self.app.AsyncResult(task_id).successful())

    def fetch(self, ids: Sequence[str]) -> list[Any]:
        return [self.app.AsyncResult(task_id).get(timeout=10) for task_id in ids]

    def call(self, x: int, y: int, timeout: float) -> Any:
        return self.add.delay(x, y).get(timeout=timeout)

    def close(self) -> None:
        if self.counter is not None:
            self.counter.close()
        self.app.close()
