"""liteq's producer side: ``add.delay()``, ``group(...).apply_async()``, ``get()``.

The app and task come from the run's generated ``benchtasks.py``, the module the
workers import with ``-A benchtasks``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from bench.drivers.celery_api import CeleryShapedAdapter
from bench.drivers.sqlstore import ResultCounter


class Adapter(CeleryShapedAdapter):
    package = "liteq"

    def __init__(self, workdir: str, options: dict[str, Any]) -> None:
        super().__init__(workdir, options)
        self.db = options.get("db")  # None: not on SQLite (count through the API)
        self.counter: ResultCounter | None = None
        self.limited = importlib.import_module("benchtasks").add_limited

    def setup(self) -> None:
        self.app.broker.open()  # creates the schema before any worker starts
        if self.db:
            self.counter = ResultCounter(
                self.db, "SELECT count(*) FROM liteq_results WHERE state = 'SUCCESS' "
                "AND task_id IN ({marks})")

    def send_limited(self, x: int, y: int) -> str:
        """WL: ``add_limited`` runs one at a time per key (``x % 100``)."""
        return str(self.limited.delay(x, y).id)

    def count_done(self, ids: Sequence[str]) -> int:
        if self.counter is not None:
            return self.counter.count(ids)
        return sum(1 for task_id in ids if self.app.AsyncResult(task_id).successful())

    def close(self) -> None:
        if self.counter is not None:
            self.counter.close()
        self.app.close()
