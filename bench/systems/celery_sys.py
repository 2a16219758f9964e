"""Celery 5 with a Redis broker and result backend, prefork ``-c 2``, default settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import redis_server
from bench.procs import Command
from bench.systems.base import Environment, write_module
from bench.systems.peer import PeerSystem

TASKS = '''
from celery import Celery

app = Celery("benchtasks", broker={broker!r}, backend={backend!r})
app.conf.broker_connection_retry_on_startup = True


@app.task(name="benchtasks.add")
def add(x, y):
    return x + y
'''


class CelerySystem(PeerSystem):
    name = "celery"
    description = "Celery 5, Redis broker (db 0) and result backend (db 1); prefork -c 2"
    adapter = "celery"
    distribution = "celery"
    needs_redis = True

    def packages(self) -> tuple[str, ...]:
        return ("celery", "kombu", "redis")

    def unavailable(self) -> str | None:
        if not redis_server.available():
            return "not installed: redis-server is not on PATH"
        return super().unavailable()

    def prepare(self, workdir: Path, env: Environment) -> dict[str, Any]:
        server = env.redis()
        server.flush()
        broker, backend = f"{server.url}/0", f"{server.url}/1"
        write_module(workdir, TASKS.format(broker=broker, backend=backend))
        return {"broker_url": broker, "result_url": backend}

    def worker_commands(self, workdir: Path, concurrency: int = 2,
                        processes: int = 1) -> list[Command]:
        return [
            Command([self.python(), "-m", "celery", "-A", "benchtasks", "worker",
                     "-P", "prefork", "-c", str(concurrency), "-l", "WARNING",
                     "-n", f"bench{index}@%h"], str(workdir), label="celery-worker")
            for index in range(processes)
        ]
