"""Huey with SqliteHuey (its defaults: WAL, SQLite's default synchronous), ``-k process -w 2``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.procs import Command
from bench.systems.base import Environment, write_module
from bench.systems.peer import PeerSystem

TASKS = '''
from huey import SqliteHuey

huey = SqliteHuey("benchtasks", filename={db!r})


@huey.task()
def add(x, y):
    return x + y
'''


class HueySystem(PeerSystem):
    name = "huey"
    description = "Huey, SqliteHuey with default options; consumer -k process -w 2"
    adapter = "huey"
    distribution = "huey"

    def prepare(self, workdir: Path, env: Environment) -> dict[str, Any]:
        db = str(workdir / "huey.db")
        write_module(workdir, TASKS.format(db=db))
        return {"db": db}

    def worker_commands(self, workdir: Path, concurrency: int = 2,
                        processes: int = 1) -> list[Command]:
        # -q: log warnings only, like every other system here (Huey logs each task at INFO).
        return [
            Command([self.python(), "-m", "huey.bin.huey_consumer", "benchtasks.huey",
                     "-k", "process", "-w", str(concurrency), "-q"], str(workdir),
                    label="huey-consumer")
            for _ in range(processes)
        ]
