"""Kill pool processes and whole workers mid-task: nothing is lost silently."""

from __future__ import annotations

import os
import signal

import pytest

import liteq
from liteq.testing import wait_for
from tests.conftest import Project
from tests.reliability.conftest import (
    process_tree,
    reliability_module,
    running_pid,
    signal_tree,
    starts,
)


def app(tasks) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """``-A`` for the test's task module: workers then use its short lease."""
    return ("-A", tasks.__name__)


def test_killed_child_with_acks_late_runs_again(project: Project) -> None:
    tasks = reliability_module(project)
    log = project.root / "log"
    worker = project.worker("-c", "1", *app(tasks), pool="prefork", database="")
    res = tasks.late.delay(str(log), 1.0)
    os.kill(running_pid(log, res.id), signal.SIGKILL)
    assert isinstance(res.get(timeout=30), int)
    assert starts(log)[res.id] == 2
    assert "queued again (acks_late)" in worker.output()


def test_killed_child_without_acks_late_is_a_worker_lost_failure(project: Project) -> None:
    tasks = reliability_module(project)
    log = project.root / "log"
    worker = project.worker("-c", "1", *app(tasks), pool="prefork", database="")
    res = tasks.early.delay(str(log), 5.0)
    os.kill(running_pid(log, res.id), signal.SIGKILL)
    with pytest.raises(liteq.WorkerLostError, match="Worker exited prematurely"):
        res.get(timeout=30)
    assert starts(log)[res.id] == 1
    # the child was replaced and the worker goes on
    assert tasks.noop.delay(str(log), 7).get(timeout=30) == 7
    assert "killed by signal 9" in worker.output()


@pytest.mark.parametrize("acks_late", [True, False])
def test_whole_worker_killed_mid_task(project: Project, acks_late: bool) -> None:
    tasks = reliability_module(project, lease=2.0)
    log = project.root / "log"
    doomed = project.worker("-c", "2", *app(tasks), pool="prefork", database="")
    task = tasks.late if acks_late else tasks.early
    res = task.delay(str(log), 1.0)
    running_pid(log, res.id)
    victims = process_tree(doomed)
    signal_tree(doomed, signal.SIGKILL)
    for process in victims:  # the children die with their parent (PDEATHSIG)
        wait_for(lambda p=process: not p.is_running() or p.status() == "zombie", 10)
    # leased by a dead worker (or already given back by its orphaned pool process)
    assert res.state in ("RECEIVED", "PENDING", "FAILURE"), res.state
    # another worker reaps the expired lease
    project.worker("-c", "1", *app(tasks), pool="prefork", database="")
    if acks_late:
        assert isinstance(res.get(timeout=30), int)
        assert starts(log)[res.id] == 2
    else:
        with pytest.raises(liteq.WorkerLostError):
            res.get(timeout=30)
        assert starts(log)[res.id] == 1


def test_a_task_that_keeps_killing_its_worker_ends_as_failure(project: Project) -> None:
    tasks = reliability_module(project)
    log = project.root / "log"
    project.worker("-c", "1", *app(tasks), pool="prefork", database="")
    res = tasks.suicidal.delay(str(log))
    with pytest.raises(liteq.WorkerLostError, match="each of 3 deliveries"):
        res.get(timeout=60)
    assert starts(log)[res.id] == 3
    assert tasks.noop.delay(str(log), 1).get(timeout=30) == 1  # the worker goes on


def test_a_long_task_that_heartbeats_is_never_taken_over(project: Project) -> None:
    tasks = reliability_module(project, lease=1.0)
    log = project.root / "log"
    project.worker("-c", "1", *app(tasks), pool="prefork", database="")
    project.worker("-c", "1", *app(tasks), pool="prefork", database="")
    res = tasks.late.delay(str(log), 4.0)  # four leases long
    assert isinstance(res.get(timeout=30), int)
    assert starts(log)[res.id] == 1


def test_a_stopped_worker_is_taken_over_and_its_late_ack_refused(project: Project) -> None:
    tasks = reliability_module(project, lease=1.5)
    log = project.root / "log"
    sleeper = project.worker("-c", "1", *app(tasks), pool="prefork", database="")
    res = tasks.late.delay(str(log), 3.0)
    first_pid = running_pid(log, res.id)
    signal_tree(sleeper, signal.SIGSTOP)
    try:
        rescuer = project.worker("-c", "1", *app(tasks), pool="prefork", database="")
        value = res.get(timeout=30)  # the rescuer reaped the expired lease and ran it
        assert value != first_pid
        assert starts(log)[res.id] == 2
    finally:
        signal_tree(sleeper, signal.SIGCONT)
    # logged once its settle was refused: B's result is already final here
    sleeper.wait_for_output("was lost (taken over after it expired)", timeout=30)
    assert tasks.app.AsyncResult(res.id).get(timeout=5) == value  # B's result stands
    assert rescuer.returncode is None


def test_children_respawned_under_load_never_hang(project: Project) -> None:
    """Children forked while housekeeping is busy (short lease: frequent heartbeats and
    checkpoints) must not inherit a locked SQLite mutex."""
    tasks = reliability_module(project, lease=0.6)
    log = project.root / "log"
    project.worker("-c", "2", "--max-tasks-per-child", "1", *app(tasks), pool="prefork",
                   database="")
    results = [tasks.noop.delay(str(log), i) for i in range(400)]
    assert [res.get(timeout=60) for res in results] == list(range(400))
