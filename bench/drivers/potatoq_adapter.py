"""potatoq's producer side (Celery's API on SQLite): ``delay()``, ``group``, ``get()``."""

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
        self.db = options["db"]
        self.counter: ResultCounter | None = None

    def setup(self) -> None:
        self.app.broker.setup()  # creates the schema before any worker starts
        self.counter = ResultCounter(
            self.db, "SELECT count(*) FROM potatoq_results WHERE id IN ({marks})")

    def send(self, x: int, y: int) -> str:
        return str(self.add.delay(x, y).id)

    def send_bulk(self, pairs: Sequence[tuple[int, int]]) -> list[str]:
        from potatoq import group

        result = group(self.add.s(x, y) for x, y in pairs).apply_async()
        return [r.id for r in result.results]

    def send_filler(self, n: int) -> None:
        for start in range(0, n, 20_000):
            self.send_bulk([(i, i + 1) for i in range(start, min(n, start + 20_000))])

    def count_done(self, ids: Sequence[str]) -> int:
        assert self.counter is not None, "setup first"
        return self.counter.count(ids)

    def fetch(self, ids: Sequence[str]) -> list[Any]:
        return [self.app.AsyncResult(task_id).get(timeout=10) for task_id in ids]

    def call(self, x: int, y: int, timeout: float) -> Any:
        return self.add.delay(x, y).get(timeout=timeout)

    def close(self) -> None:
        if self.counter is not None:
            self.counter.close()
