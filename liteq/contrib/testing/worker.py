"""``from liteq.contrib.testing.worker import start_worker``, where Celery users import it
(``celery.contrib.testing.worker``). See :func:`liteq.testing.start_worker`."""

from __future__ import annotations

from liteq.testing import WORKER_LOGLEVEL, start_worker
from liteq.worker.background import WorkerThread

#: Celery's name for the embedded worker's class.
TestWorkController = WorkerThread

__all__ = ["WORKER_LOGLEVEL", "TestWorkController", "start_worker"]
