"""What every benchmarked system provides to the harness.

A system knows how to lay out one run's working directory (database path, generated
``benchtasks.py``), which interpreter and adapter its producer driver uses, and the
commands that start its worker processes. Everything else (timing, freezing, CPU
accounting, checking) is the harness's and the same for all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.procs import Command


class Environment:
    """Shared services for all systems of one benchmark invocation (a Redis server)."""

    def __init__(self) -> None:
        self._redis: Any = None

    def redis(self) -> Any:
        """The private redis-server, started on first use."""
        if self._redis is None:
            from bench.redis_server import RedisServer

            self._redis = RedisServer().start()
        return self._redis

    def close(self) -> None:
        if self._redis is not None:
            self._redis.stop()
            self._redis = None


class System:
    """One row of the table.

    Subclasses set the class attributes and implement :meth:`prepare` and
    :meth:`worker_commands`.
    """

    #: The row's name, as given to ``--systems``.
    name = ""
    #: One line for the README and the table's notes.
    description = ""
    #: The module ``bench/drivers/<adapter>_adapter.py`` that produces for it.
    adapter = ""
    #: W7 (scaling) applies: the worker's concurrency and process count can vary.
    scalable = False
    #: The payload and shape workloads (W8-W11) it can run; the others are "n/a".
    shapes: frozenset[str] = frozenset()
    #: Needs the private redis-server.
    needs_redis = False

    def python(self) -> str:
        """The interpreter of its producer driver and workers."""
        return sys.executable

    def unavailable(self) -> str | None:
        """Why it cannot run here (shown in its row), or None."""
        return None

    def versions(self) -> str:
        """Its version, for the notes."""
        return ""

    def prepare(self, workdir: Path, env: Environment) -> dict[str, Any]:
        """Set up a fresh run in ``workdir``; returns the driver's options."""
        raise NotImplementedError

    def worker_commands(self, workdir: Path, concurrency: int = 2,
                        processes: int = 1, queues: Sequence[str] = ()) -> list[Command]:
        """Commands starting ``processes`` workers of ``concurrency`` each (consuming
        ``queues``, where given: W10)."""
        raise NotImplementedError


def write_module(workdir: Path, source: str) -> None:
    """Write the run's ``benchtasks.py`` (imported by workers and the driver alike)."""
    (workdir / "benchtasks.py").write_text(source.lstrip(), encoding="utf-8")
