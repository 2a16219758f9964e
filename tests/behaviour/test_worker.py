"""The production worker: start methods, time limits, recycling, shutdown, threads."""

from __future__ import annotations

import signal

import pytest

import liteq
from liteq.testing import wait_for
from tests.conftest import Project

WORKER_TASKS = """
import os
import time
from liteq import LiteQ, SoftTimeLimitExceeded, signals

app = LiteQ(__name__, broker="@BROKER@", task_soft_time_limit=@SETTING_SOFT@)
STATE = {"init": None}


@signals.worker_process_init.connect
def setup(**kwargs):
    STATE["init"] = os.getpid()


@app.task
def pid():
    return {"pid": os.getpid(), "init": STATE["init"]}


@app.task
def catches_soft_limit(seconds):
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@app.task(time_limit=1)
def runaway():
    while True:
        time.sleep(0.01)


@app.task
def sleepy(seconds):
    time.sleep(seconds)
    return seconds


@app.task
def hog(megabytes):
    global KEEP
    KEEP = bytearray(megabytes * 1024 * 1024)
    return os.getpid()
"""


def module(project: Project, soft: str = "None"):  # type: ignore[no-untyped-def]
    return project.module(WORKER_TASKS.replace("@SETTING_SOFT@", soft))


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_start_methods_and_worker_process_init(project: Project, method: str) -> None:
    tasks = module(project)
    project.worker("-c", "2", "--start-method", method, "-A", tasks.__name__,
                   pool="prefork", database="")
    info = tasks.pid.delay().get(timeout=60)
    assert info["init"] == info["pid"]  # worker_process_init ran in that very child


def test_soft_time_limit_is_catchable_as_option_setting_and_flag(project: Project) -> None:
    tasks = module(project, soft="0.3")
    project.worker("-c", "1", "-A", tasks.__name__, pool="prefork", database="")
    assert tasks.catches_soft_limit.delay(5).get(timeout=20) == "cleaned up"  # setting
    res = tasks.catches_soft_limit.apply_async((5,), soft_time_limit=0.2)  # apply_async
    assert res.get(timeout=20) == "cleaned up"
    assert tasks.catches_soft_limit.delay(0.05).get(timeout=20) == "finished"


def test_soft_time_limit_worker_flag_and_threads_pool(project: Project) -> None:
    tasks = module(project)
    project.worker("-c", "2", "--soft-time-limit", "0.3", pool="threads")
    assert tasks.catches_soft_limit.delay(5).get(timeout=20) == "cleaned up"


def test_hard_time_limit_kills_and_replaces_the_child(project: Project) -> None:
    tasks = module(project)
    worker = project.worker("-c", "1", pool="prefork")
    before = tasks.pid.delay().get(timeout=20)["pid"]
    res = tasks.runaway.delay()
    with pytest.raises(liteq.TimeLimitExceeded):
        res.get(timeout=20)
    assert "Hard time limit (1s) exceeded" in worker.output()
    after = tasks.pid.delay().get(timeout=20)["pid"]
    assert after != before  # replaced
    # as an apply_async option and as a worker flag
    with pytest.raises(liteq.TimeLimitExceeded):
        tasks.sleepy.apply_async((30,), time_limit=0.5).get(timeout=20)


def test_hard_time_limit_worker_flag(project: Project) -> None:
    tasks = module(project)
    project.worker("-c", "1", "--time-limit", "0.5", pool="prefork")
    with pytest.raises(liteq.TimeLimitExceeded):
        tasks.sleepy.delay(30).get(timeout=20)
    assert tasks.sleepy.delay(0.01).get(timeout=20) == 0.01


def test_max_tasks_per_child_recycles(project: Project) -> None:
    tasks = module(project)
    project.worker("-c", "1", "--max-tasks-per-child", "3", pool="prefork")
    pids = [tasks.pid.delay().get(timeout=20)["pid"] for _ in range(9)]
    assert len(set(pids)) == 3
    assert pids[0] == pids[1] == pids[2] != pids[3]


def test_max_memory_per_child_recycles(project: Project) -> None:
    tasks = module(project)
    project.worker("-c", "1", "--max-memory-per-child", "150000", pool="prefork")
    first = tasks.hog.delay(200).get(timeout=30)
    second = tasks.pid.delay().get(timeout=30)["pid"]
    assert first != second


def test_warm_shutdown_finishes_running_and_returns_prefetched(project: Project) -> None:
    tasks = module(project)
    worker = project.worker("-c", "1", "--prefetch-multiplier", "4", pool="prefork")
    running = tasks.sleepy.delay(1.5)
    wait_for(lambda: running.state == "RECEIVED", 10)
    queued = [tasks.sleepy.delay(0.01) for _ in range(3)]
    worker.signal(signal.SIGTERM)
    worker.process.wait(30)
    assert worker.returncode == 0
    assert running.get(timeout=1) == 1.5  # finished, not interrupted
    assert all(res.state == "PENDING" for res in queued)  # returned, not lost or run
    assert tasks.app.broker.depth()["celery"].ready == 3
    project.worker()
    assert [res.get(timeout=20) for res in queued] == [0.01] * 3


def test_cold_shutdown_of_prefork(project: Project) -> None:
    tasks = module(project)
    worker = project.worker("-c", "1", pool="prefork")
    running = tasks.sleepy.delay(30)
    wait_for(lambda: running.state == "RECEIVED", 10)
    worker.signal(signal.SIGTERM)
    worker.wait_for_output("Warm shutdown")
    worker.signal(signal.SIGTERM)
    worker.process.wait(30)
    assert worker.returncode == 1
    assert "Cold shutdown" in worker.output()
    with pytest.raises(liteq.WorkerLostError):
        running.get(timeout=10)


def test_threads_pool_runs_tasks_concurrently(project: Project) -> None:
    tasks = module(project)
    project.worker("-c", "4", pool="threads")
    results = [tasks.sleepy.delay(1) for _ in range(4)]
    started = __import__("time").monotonic()
    assert [r.get(timeout=20) for r in results] == [1, 1, 1, 1]
    assert __import__("time").monotonic() - started < 3.5


def test_app_start_failure_is_one_clear_error(project: Project) -> None:
    (project.root / "broken_app.py").write_text("raise RuntimeError('boom at import')\n")
    done = project.liteq("-A", "broken_app", "worker", timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "RuntimeError: boom at import" in done.stderr
    assert "broken_app.py:1" in done.stderr
