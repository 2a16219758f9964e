"""potatoq's producer side (Celery's API on SQLite): ``delay()``, ``group``, ``get()``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.drivers.celery_api import CeleryShapedAdapter
from bench.drivers.sqlstore import ResultCounter


class Adapter(CeleryShapedAdapter):
    package = "potatoq"

    def __init__(self, workdir: str, options: dict[str, Any]) -> None:
        super().__init__(workdir, options)
        self.db = options["db"]
        self.counter: ResultCounter | None = None

    def setup(self) -> None:
        self.app.broker.setup()  # creates the schema before any worker starts
        self.counter = ResultCounter(
            self.db, "SELECT count(*) FROM potatoq_results WHERE id IN ({marks})")

    def count_done(self, ids: Sequence[str]) -> int:
        assert self.counter is not None, "setup first"
        return self.counter.count(ids)

    def close(self) -> None:
        if self.counter is not None:
            self.counter.close()
