"""The floor rows: ``bench/floor.py`` workers, 1 or 64 jobs per transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import floor
from bench.procs import Command
from bench.systems.base import Environment, System


class FloorSystem(System):
    adapter = "floor"
    scalable = True
    #: the payload task (the floor has no queues or priorities)
    shapes = frozenset({"W8", "W9"})

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.name = f"floor-{batch}"
        self.description = (f"stdlib sqlite3, WAL, synchronous=NORMAL; 2 processes, "
                            f"{batch} job{'s' if batch > 1 else ''} claimed and finished "
                            "per transaction")

    def versions(self) -> str:
        import sqlite3

        return f"sqlite3 {sqlite3.sqlite_version}"

    def prepare(self, workdir: Path, env: Environment) -> dict[str, Any]:
        return {"db": str(workdir / "floor.db")}

    def worker_commands(self, workdir: Path, concurrency: int = 2,
                        processes: int = 1) -> list[Command]:
        # The floor has no pool: "-c N" is N processes, as many as a pool would have.
        script = str(Path(floor.__file__).resolve())
        return [
            Command([self.python(), script, "worker", str(workdir / "floor.db"),
                     "--batch", str(self.batch)], str(workdir), label="floor-worker")
            for _ in range(concurrency * processes)
        ]
