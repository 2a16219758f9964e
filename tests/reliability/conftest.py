"""Reliability fixtures: a task module that logs every start and end, with short leases."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import psutil

from liteq.testing import WorkerProcess, wait_for

#: Tasks that append "start|end <task id> <pid>" lines to a log (O_APPEND: atomic).
RELIABILITY_TASKS = '''
import os
import signal
import time
from liteq import LiteQ

app = LiteQ(__name__, broker="@BROKER@",
            broker_transport_options={"visibility_timeout": @LEASE@},
            task_max_deliveries=3)


def _log(path, what, task_id):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{what} {task_id} {os.getpid()}\\n".encode())
    finally:
        os.close(fd)


@app.task(bind=True, acks_late=True)
def late(self, log, seconds):
    _log(log, "start", self.request.id)
    time.sleep(seconds)
    _log(log, "end", self.request.id)
    return os.getpid()


@app.task(bind=True)
def early(self, log, seconds):
    _log(log, "start", self.request.id)
    time.sleep(seconds)
    _log(log, "end", self.request.id)
    return os.getpid()


@app.task(bind=True, acks_late=True)
def suicidal(self, log):
    _log(log, "start", self.request.id)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(bind=True)
def noop(self, log, i):
    _log(log, "start", self.request.id)
    return i
'''


def reliability_module(project, lease: float = 2.0):  # type: ignore[no-untyped-def]
    source = RELIABILITY_TASKS.replace("@LEASE@", repr(lease))
    return project.module(source)


def log_lines(path: Path) -> list[tuple[str, str, int]]:
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        what, task_id, pid = line.split()
        lines.append((what, task_id, int(pid)))
    return lines


def starts(path: Path) -> Counter[str]:
    return Counter(task_id for what, task_id, _ in log_lines(path) if what == "start")


def running_pid(path: Path, task_id: str, timeout: float = 15.0) -> int:
    """The pid of the process that started ``task_id`` (waits for the start line)."""
    def find() -> int | None:
        found = [pid for what, tid, pid in log_lines(path) if what == "start" and tid == task_id]
        return found[-1] if found else None

    return int(wait_for(find, timeout, message=f"start of {task_id}"))


def process_tree(worker: WorkerProcess) -> list[psutil.Process]:
    main = psutil.Process(worker.pid)
    return [main, *main.children(recursive=True)]


def signal_tree(worker: WorkerProcess, signum: int) -> None:
    """Send ``signum`` to the worker and all its children (by pid, never by name)."""
    for process in process_tree(worker):
        try:
            os.kill(process.pid, signum)
        except ProcessLookupError:
            pass


__all__ = ["log_lines", "process_tree", "reliability_module", "running_pid", "signal",
           "signal_tree", "starts"]
