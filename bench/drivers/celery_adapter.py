"""Celery's producer side (Redis broker and result backend).

Completion is polled with ``EXISTS`` on the result keys (database ``result_db``).
The W5 filler is pushed straight onto the broker list: one message is sent through
Celery, read back, and copied with fresh task ids and delivery tags in pipelined
``LPUSH`` calls (sending 200,000 through ``apply_async`` takes minutes and only has
to be there, untimed). Depth costs a Redis list nothing, which is the point of W5.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from bench.drivers.celery_api import CeleryShapedAdapter


class Adapter(CeleryShapedAdapter):
    package = "celery"

    def __init__(self, workdir: str, options: dict[str, Any]) -> None:
        import redis

        super().__init__(workdir, options)
        self.broker = redis.Redis.from_url(options["broker_url"])
        self.results = redis.Redis.from_url(options["result_url"])
        self.queue = options.get("queue", "celery")

    def setup(self) -> None:
        self.broker.ping()
        self.results.ping()

    def send_filler(self, n: int) -> None:
        template_id = self.send(0, 1)
        raw = self.broker.lindex(self.queue, 0)
        if raw is None or template_id.encode() not in raw:
            raise RuntimeError("cannot find the template message at the head of the queue")
        text = raw.decode()
        tag = json.loads(text)["properties"]["delivery_tag"]
        remaining = n - 1
        while remaining > 0:
            chunk = min(remaining, 1000)
            values = [text.replace(template_id, str(uuid.uuid4())).replace(tag, str(uuid.uuid4()))
                      for _ in range(chunk)]
            self.broker.lpush(self.queue, *values)
            remaining -= chunk

    def count_done(self, ids: Sequence[str]) -> int:
        total = 0
        for start in range(0, len(ids), 1000):
            keys = [f"celery-task-meta-{task_id}" for task_id in ids[start:start + 1000]]
            total += int(self.results.exists(*keys))
        return total

    def fetch(self, ids: Sequence[str]) -> list[Any]:
        values = []
        for task_id in ids:
            result = self.app.AsyncResult(task_id)
            values.append(result.result if result.state == "SUCCESS" else None)
        return values

    def close(self) -> None:
        self.broker.close()
        self.results.close()
