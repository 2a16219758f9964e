"""Shutdown always ends, and the pool dies with its worker: a closed stdout/stderr pipe
(``liteq worker ... | tee log`` with tee gone), a main process that stops heartbeating."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest

from liteq.testing import wait_for
from tests.conftest import Project, _pythonpath
from tests.reliability.conftest import reliability_module, running_pid

#: Longest a stopped worker may take to exit here (a deadline, not a timing claim).
EXIT_DEADLINE = 60


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "running-a-task"])
def test_worker_exits_after_its_output_pipe_closed(project: Project, busy: bool) -> None:
    tasks = reliability_module(project)
    log = project.root / "log"
    # stdout and stderr into one pipe, as `liteq worker ... 2>&1 | tee log`
    worker = subprocess.Popen(
        [sys.executable, "-m", "liteq", "worker", "-A", tasks.__name__, "-P", "prefork",
         "-c", "2", "-l", "info"],
        cwd=project.root, env={"PYTHONPATH": _pythonpath(), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert worker.stdout is not None
        seen = b""
        while b"ready." not in seen:
            line = worker.stdout.readline()
            assert line, seen.decode(errors="replace")
            seen += line
        pool = psutil.Process(worker.pid).children(recursive=True)
        assert pool
        assert tasks.noop.delay(str(log), 1).get(timeout=30) == 1
        worker.stdout.close()  # tee is gone: every later write fails with EPIPE
        if busy:
            res = tasks.early.delay(str(log), 2.0)
            running_pid(log, res.id)
        assert tasks.noop.delay(str(log), 2).get(timeout=30) == 2  # it logs to the pipe
        worker.send_signal(signal.SIGTERM)
        worker.wait(EXIT_DEADLINE)  # exits, never hangs
        for process in pool:
            wait_for(lambda p=process: _gone(p), 10, message="pool process gone")
        if busy:
            assert res.get(timeout=10) > 0  # a warm stop let the running task finish
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def test_pool_stops_claiming_while_its_main_process_is_stopped(project: Project) -> None:
    tasks = reliability_module(project, lease=3.0)  # heartbeats every 0.5 s
    log = project.root / "log"
    worker = project.worker("-c", "2", "-A", tasks.__name__, pool="prefork", database="")
    assert tasks.noop.delay(str(log), 0).get(timeout=30) == 0
    worker.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: "stopped heartbeating" in worker.output(), 30,
                 message="the pool noticing")
        sent = [tasks.noop.delay(str(log), i) for i in range(1, 5)]
        time.sleep(2.0)  # time that must pass: the pool could claim them in it
        assert all(res.state == "PENDING" for res in sent)
        assert tasks.app.broker.depth()["celery"].ready == len(sent)
    finally:
        worker.signal(signal.SIGCONT)
    assert [res.get(timeout=30) for res in sent] == [1, 2, 3, 4]
    assert "heartbeats again: claiming resumed" in worker.output()
