"""The floor's producer side (stdlib ``sqlite3``), see ``bench/floor.py``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from bench import floor


class Adapter:
    bulk_api = "executemany in one transaction"

    def __init__(self, workdir: str, options: dict[str, Any]) -> None:
        self.path = os.path.join(workdir, options.get("db", "floor.db"))
        self.producer: floor.Producer | None = None

    def setup(self) -> None:
        floor.create(self.path)
        self.producer = floor.Producer(self.path)

    @property
    def p(self) -> floor.Producer:
        assert self.producer is not None, "setup first"
        return self.producer

    def send(self, x: int, y: int) -> str:
        return self.p.send(x, y)

    def send_payload(self, x: int, y: int, data: str, size: int) -> str:
        return self.p.send_payload(x, y, data, size)

    def send_bulk(self, pairs: Sequence[tuple[int, int]]) -> list[str]:
        return self.p.send_many(pairs)

    def send_filler(self, n: int) -> None:
        for start in range(0, n, 50_000):
            self.p.send_many((i, i + 1) for i in range(start, min(n, start + 50_000)))

    def count_done(self, ids: Sequence[str]) -> int:
        return self.p.count_done(ids)

    def fetch(self, ids: Sequence[str]) -> list[Any]:
        found = self.p.values(ids)
        return [found.get(task_id) for task_id in ids]

    def call(self, x: int, y: int, timeout: float) -> Any:
        return self.p.wait(self.p.send(x, y), timeout)

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close()
