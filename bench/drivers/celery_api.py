"""What the adapters of the Celery-shaped APIs (liteq, Celery, potatoq) share.

Each system's producer imports the run's generated ``benchtasks.py`` (the module its
workers import with ``-A benchtasks``) and sends through the API a user would call.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

#: tasks per group() when queueing W5's untimed filler
FILLER_CHUNK = 20_000


class CeleryShapedAdapter:
    bulk_api = "group(...).apply_async()"
    #: the package whose ``group`` sends the bulk batch
    package = ""

    def __init__(self, workdir: str, options: dict[str, Any]) -> None:
        sys.path.insert(0, workdir)
        tasks = importlib.import_module("benchtasks")
        self.tasks = tasks
        self.app, self.add = tasks.app, tasks.add

    def send(self, x: int, y: int) -> str:
        return str(self.add.delay(x, y).id)

    def send_payload(self, x: int, y: int, data: str, size: int) -> str:
        """W8, W9: ``blob(x, y, data, size)``, where the run's tasks module has it."""
        blob = getattr(self.tasks, "blob", None)
        if blob is None:
            raise NotImplementedError("no blob task")
        return str(blob.delay(x, y, data, size).id)

    def send_to(self, x: int, y: int, queue: str | None, priority: int | None) -> str:
        """W10, W11: ``add`` to one of many queues, or with a priority."""
        return str(self.add.apply_async((x, y), queue=queue, priority=priority).id)

    def send_bulk(self, pairs: Sequence[tuple[int, int]]) -> list[str]:
        group = importlib.import_module(self.package).group
        result = group(self.add.s(x, y) for x, y in pairs).apply_async()
        return [r.id for r in result.results]

    def send_filler(self, n: int) -> None:
        for start in range(0, n, FILLER_CHUNK):
            self.send_bulk([(i, i + 1) for i in range(start, min(n, start + FILLER_CHUNK))])

    def fetch(self, ids: Sequence[str]) -> list[Any]:
        return [self.app.AsyncResult(task_id).get(timeout=10) for task_id in ids]

    def call(self, x: int, y: int, timeout: float) -> Any:
        return self.add.delay(x, y).get(timeout=timeout)
