"""potatoq (alpha): Celery's API on SQLite, prefork ``-c 2``, default settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.procs import Command
from bench.systems.base import Environment, write_module
from bench.systems.peer import PeerSystem

TASKS = '''
from potatoq import Potatoq

app = Potatoq("benchtasks", broker={broker!r})


@app.task(name="benchtasks.add")
def add(x, y):
    return x + y
'''


class PotatoqSystem(PeerSystem):
    name = "potatoq"
    description = "potatoq 26.1a8, SQLite broker and results (its defaults); prefork -c 2"
    adapter = "potatoq"
    distribution = "potatoq"

    def prepare(self, workdir: Path, env: Environment) -> dict[str, Any]:
        db = workdir / "potatoq.db"
        write_module(workdir, TASKS.format(broker=f"sqlite:///{db}"))
        return {"db": str(db)}

    def worker_commands(self, workdir: Path, concurrency: int = 2,
                        processes: int = 1) -> list[Command]:
        return [
            Command([self.python(), "-m", "potatoq", "-A", "benchtasks", "worker",
                     "-c", str(concurrency), "-l", "WARNING", "-n", f"bench{index}@%h"],
                    str(workdir), label="potatoq-worker")
            for index in range(processes)
        ]
