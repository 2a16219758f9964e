"""One trial: a system in a fresh temporary directory, with its driver and workers.

Every trial gets a new directory (and database, or a flushed Redis), its own producer
driver, and worker processes started by pid; leaving the ``with`` block stops them all,
whatever happened inside.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import procs
from bench.driver_client import Driver, DriverTimeout
from bench.systems.base import Environment, System

logger = logging.getLogger(__name__)


@dataclass
class Sizes:
    """How big each workload is (``--quick`` shrinks them)."""

    tasks: int = 10_000
    deep: int = 200_000
    roundtrips: int = 300
    idle_seconds: float = 20.0
    warm: int = 20
    settle: float = 0.5

    @classmethod
    def quick(cls) -> Sizes:
        return cls(tasks=1_000, deep=20_000, roundtrips=50, idle_seconds=3.0, warm=10,
                   settle=0.3)


def timeout_for(tasks: int, rate_floor: float = 100.0) -> float:
    """A deadline generous enough for a slow system, short enough to notice a hang."""
    return 60.0 + tasks / rate_floor


class Trial:
    """A fresh run of ``system``.

    Example:
        >>> with Trial(system, env, sizes) as trial:  # doctest: +SKIP
        ...     workers = trial.start_workers()
        ...     trial.warm_up(workers)
    """

    def __init__(self, system: System, env: Environment, sizes: Sizes, *,
                 keep: bool = False, root: str | None = None) -> None:
        self.system = system
        self.env = env
        self.sizes = sizes
        self.keep = keep
        self.root = root
        self.workdir = Path()
        self.driver: Driver | None = None
        #: more producer processes (W6p), each with its own driver
        self.extra_drivers: list[Driver] = []
        self.options: dict[str, Any] = {}
        self.setup_info: dict[str, Any] = {}
        self.groups: list[procs.ProcessGroup] = []

    def __enter__(self) -> Trial:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"liteq-bench-{self.system.name}-",
                                             dir=self.root))
        try:
            self.options = self.system.prepare(self.workdir, self.env)
            self.driver = Driver(self.system.python(), self.system.adapter, self.workdir,
                                 self.options).start()
            self.setup_info = self.request("setup", wait=60.0)
        except BaseException:
            self.close(failed=True)
            raise
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        self.close(failed=exc_type is not None)

    def close(self, failed: bool = False) -> None:
        for group in self.groups:
            group.stop()
        self.groups = []
        for extra in self.extra_drivers:
            extra.close(graceful=not failed)
        self.extra_drivers = []
        if self.driver is not None:
            self.driver.close(graceful=not failed)
            self.driver = None
        if self.keep or (failed and logger.isEnabledFor(logging.DEBUG)):
            logger.info("kept %s", self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the driver ------------------------------------------------------------------

    def request(self, op: str, wait: float = 60.0, **arguments: Any) -> dict[str, Any]:
        """One driver request; a failure names a worker that died meanwhile."""
        self.send(op, **arguments)
        return self.receive(op, wait)

    def send(self, op: str, **arguments: Any) -> None:
        """Send a request without waiting (collect it with :meth:`receive`)."""
        assert self.driver is not None
        self.driver.send(op, **arguments)

    def receive(self, op: str, wait: float) -> dict[str, Any]:
        """The answer to ``op``; gives up early (naming it) when a worker has died."""
        assert self.driver is not None
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.driver.receive(op, min(1.0, max(0.0, deadline - time.monotonic())))
            except DriverTimeout:
                note = self._worker_note()
                if note:
                    raise RuntimeError(f"{op}: a worker died{note}") from None
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"{op}: no answer within {wait:g}s") from None
            except Exception as exc:
                raise RuntimeError(f"{exc}{self._worker_note()}") from exc

    def _worker_note(self) -> str:
        for group in self.groups:
            try:
                group.check()
            except RuntimeError as exc:
                return f" ({exc})"
        return ""

    def add_producers(self, count: int) -> list[Driver]:
        """Start ``count`` more producer drivers on this run's store (W6p); returns them
        (the trial's own driver not included), set up."""
        for _ in range(count):
            driver = Driver(self.system.python(), self.system.adapter, self.workdir,
                            self.options).start()
            self.extra_drivers.append(driver)
            driver.request("setup", wait=60.0)
        return list(self.extra_drivers)

    def driver_cpu(self) -> float:
        """CPU seconds the producer driver has used (its polling is harness overhead)."""
        assert self.driver is not None and self.driver.process is not None
        try:
            return procs.process_cpu(psutil.Process(self.driver.process.pid))
        except psutil.Error:
            return 0.0

    # -- workers ---------------------------------------------------------------------

    def start_workers(self, concurrency: int = 2, processes: int = 1,
                      queues: Sequence[str] = ()) -> procs.ProcessGroup:
        if queues:
            commands = self.system.worker_commands(self.workdir, concurrency, processes,
                                                   queues=queues)
        else:
            commands = self.system.worker_commands(self.workdir, concurrency, processes)
        group = procs.ProcessGroup(commands, self.workdir).start()
        self.groups.append(group)
        return group

    def warm_up(self, group: procs.ProcessGroup) -> float:
        """Wait until the workers run tasks; returns seconds from spawn to first result."""
        reply = self.request("warmup", wait=150.0, n=self.sizes.warm, timeout=120.0)
        startup = float(reply["t_first"]) - group.started_at
        time.sleep(self.sizes.settle)
        group.check()
        return startup
