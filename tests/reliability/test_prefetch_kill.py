"""With acks_late off, a killed worker (or pool process) fails only the task that
started; the tasks it had claimed ahead and never started go back to the queue."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

import liteq
from liteq.testing import wait_for
from tests.conftest import Project
from tests.reliability.conftest import reliability_module, running_pid, starts


@pytest.mark.parametrize("victim", ["worker", "pool-process"])
def test_kill_during_prefetch_returns_unstarted_tasks(project: Project, victim: str) -> None:
    tasks = reliability_module(project, lease=2.0)
    log = project.root / "log"
    worker = project.worker("-c", "1", "-A", tasks.__name__, pool="prefork", database="")
    # tiny tasks first: the pool process learns they are short and claims many at once
    warm = [tasks.noop.delay(str(log), i) for i in range(3)]
    assert [res.get(timeout=30) for res in warm] == [0, 1, 2]
    child = running_pid(log, warm[-1].id)
    os.kill(child, signal.SIGSTOP)  # so it finds them all queued at its next claim
    try:
        long = tasks.early.delay(str(log), 30.0)  # acks_late off
        tiny = [tasks.noop.delay(str(log), i) for i in range(10, 30)]
    finally:
        os.kill(child, signal.SIGCONT)
    pid = running_pid(log, long.id)
    wait_for(lambda: tasks.app.broker.depth()["celery"].ready < len(tiny), 10,
             message="tasks claimed ahead")
    prefetched = len(tiny) - tasks.app.broker.depth()["celery"].ready
    assert prefetched > 0
    if victim == "worker":
        os.kill(worker.pid, signal.SIGKILL)
        wait_for(lambda: not psutil.pid_exists(pid) or
                 psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 20,
                 message="the pool process gone with its worker")
        project.worker("-c", "1", "-A", tasks.__name__, pool="prefork", database="")
    else:
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(liteq.WorkerLostError):
        long.get(timeout=30)
    assert [res.get(timeout=30) for res in tiny] == list(range(10, 30))
    counts = starts(log)
    assert counts[long.id] == 1
    assert all(counts[res.id] == 1 for res in tiny)
