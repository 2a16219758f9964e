"""liteq on SQLite (``synchronous=NORMAL`` or ``FULL``), and on Redis once it exists.

Workers run as ``<python> -m liteq -A benchtasks worker -c N`` in the run's directory,
with the liteq the harness's interpreter imports.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.procs import Command
from bench.systems.base import Environment, System, write_module

TASKS = '''
from liteq import LiteQ

app = LiteQ("benchtasks", broker={broker!r}, **{settings!r})


@app.task(name="benchtasks.add")
def add(x, y):
    return x + y


@app.task(name="benchtasks.blob")
def blob(x, y, data, size):
    return x + y if not size else str(x + y) + "r" * size


# WL: at most one running at once per key, over 100 keys (flow control in the claim)
@app.task(name="benchtasks.add_limited", concurrency_limit=1,
          concurrency_key=lambda x, y: x % 100)
def add_limited(x, y):
    return x + y
'''


def liteq_dir() -> Path | None:
    """Where the liteq package this interpreter imports lives (without importing it)."""
    spec = importlib.util.find_spec("liteq")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


class LiteQSystem(System):
    adapter = "liteq"
    scalable = True
    shapes = frozenset({"W8", "W9", "W10", "W11"})

    def __init__(self, name: str, synchronous: str = "NORMAL", redis: bool = False) -> None:
        self.name = name
        self.synchronous = synchronous
        self.needs_redis = redis
        where = "Redis" if redis else f"SQLite, synchronous={synchronous}"
        self.description = f"liteq on {where}; one worker, prefork -c 2"

    def unavailable(self) -> str | None:
        package = liteq_dir()
        if package is None:
            return "liteq is not importable here (run the harness with liteq's venv)"
        if self.needs_redis:
            transports = package / "transports"
            if not ((transports / "redis.py").exists() or (transports / "redis").is_dir()):
                return "not available: liteq has no Redis transport yet"
            if importlib.util.find_spec("redis") is None:
                return 'not installed: the redis package (pip install "liteq[redis]")'
            from bench import redis_server

            if not redis_server.available():
                return "not installed: redis-server is not on PATH"
        return None

    def versions(self) -> str:
        try:
            from importlib.metadata import version

            return f"liteq {version('liteq')}"
        except Exception:
            return "liteq"

    def prepare(self, workdir: Path, env: Environment) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        options: dict[str, Any] = {}
        if self.needs_redis:
            server = env.redis()
            server.flush()
            broker = f"{server.url}/0"
        else:
            db = workdir / "liteq.db"
            broker = f"sqlite:///{db}"  # an absolute path: sqlite:////abs
            settings["sqlite_synchronous"] = self.synchronous
            options["db"] = str(db)
        write_module(workdir, TASKS.format(broker=broker, settings=settings))
        return options

    def worker_commands(self, workdir: Path, concurrency: int = 2,
                        processes: int = 1, queues: Sequence[str] = ()) -> list[Command]:
        consume = ["-Q", ",".join(queues)] if queues else []
        return [
            Command([self.python(), "-m", "liteq", "-A", "benchtasks", "worker",
                     "-c", str(concurrency), "-l", "warning", "--no-banner",
                     "-n", f"bench{index}@%h", *consume], str(workdir), label="liteq-worker")
            for index in range(processes)
        ]
