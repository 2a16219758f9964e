"""``liteq.ping``, the task ``start_worker`` sends to check a worker (Celery's
``celery.contrib.testing.tasks.ping``)."""

from __future__ import annotations

from liteq import shared_task
from liteq.testing import PING_TASK
from liteq.testing import ping as _ping

#: ``ping.delay().get(timeout=10) == "pong"`` once a worker consumes.
ping = shared_task(name=PING_TASK)(_ping)

__all__ = ["ping"]
