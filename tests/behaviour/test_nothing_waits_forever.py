"""A task that ends outside its code (its pool process lost, killed at its hard time
limit) still counts as its chord's part, and keeps its call so ``liteq retry`` can send
it again; a revoked task that was already prefetched never starts."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import liteq
from liteq import chord, group
from liteq.testing import wait_for
from tests.conftest import TASKS, Project

DYING = TASKS + '''
import signal


@app.task
def die(marker):
    """The pool process dies mid-task (as an out-of-memory kill would) the first time."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


@app.task(time_limit=1)
def hang(seconds):
    time.sleep(seconds)


@app.task
def tsum(numbers):
    return sum(numbers)


@app.task
def block_until(path):
    while not os.path.exists(path):
        time.sleep(0.02)
'''


def _retried_as(output: str, task_id: str) -> str:
    found = dict(re.findall(r"^(\S+) \S+: retried as (\S+)$", output, re.MULTILINE))
    return found[task_id]


def test_a_chord_whose_header_task_is_lost_ends(project: Project, tmp_path: Path) -> None:
    tasks = project.module(DYING)
    project.worker("-c", "1", pool="prefork")
    body = chord([tasks.add.s(1, 1), tasks.die.s(str(tmp_path / "died"))])(tasks.tsum.s())
    error = body.get(timeout=30, propagate=False)
    assert body.state == "FAILURE"
    assert isinstance(error, liteq.ChordError) and "WorkerLostError" in str(error), error


def test_a_chord_whose_header_task_hits_its_hard_time_limit_ends(project: Project) -> None:
    tasks = project.module(DYING)
    project.worker("-c", "1", pool="prefork")
    body = chord([tasks.add.s(1, 1), tasks.hang.s(60)])(tasks.tsum.s())
    error = body.get(timeout=30, propagate=False)
    assert body.state == "FAILURE"
    assert isinstance(error, liteq.ChordError) and "TimeLimitExceeded" in str(error), error


def test_a_task_lost_with_its_process_can_be_sent_again(project: Project,
                                                        tmp_path: Path) -> None:
    tasks = project.module(DYING)
    project.worker("-c", "1", pool="prefork")
    lost = tasks.die.delay(str(tmp_path / "died"))
    assert isinstance(lost.get(timeout=30, propagate=False), liteq.WorkerLostError)
    done = project.liteq("retry", lost.id, "-b", project.location)
    assert done.returncode == 0, done.stderr
    again = tasks.app.AsyncResult(_retried_as(done.stdout, lost.id))
    assert again.get(timeout=15) == "survived"


def test_a_task_killed_at_its_hard_time_limit_can_be_sent_again(project: Project) -> None:
    tasks = project.module(DYING)
    project.worker("-c", "1", pool="prefork")
    killed = tasks.hang.delay(60)
    assert isinstance(killed.get(timeout=30, propagate=False), liteq.TimeLimitExceeded)
    done = project.liteq("retry", killed.id, "-b", project.location)
    assert done.returncode == 0, done.stderr
    again = tasks.app.AsyncResult(_retried_as(done.stdout, killed.id))
    assert isinstance(again.get(timeout=30, propagate=False), liteq.TimeLimitExceeded)


def test_a_task_revoked_after_it_was_prefetched_never_starts(project: Project,
                                                            tmp_path: Path) -> None:
    tasks = project.module(DYING)
    project.worker("-c", "1", "--prefetch-multiplier", "4")
    for _ in range(3):  # the worker learns that tasks are short: it claims by the batch
        tasks.add.delay(1, 1).get(timeout=10)
    gate, out = tmp_path / "gate", tmp_path / "ran"
    group([tasks.block_until.si(str(gate)),
           *(tasks.record.si(str(out), n) for n in range(3))]).apply_async()
    waiting = tasks.app.broker.messages(states=["ready", "leased"])
    ids = [m.envelope.task_id for m in waiting if m.envelope.task_name.endswith(".record")]
    assert len(ids) == 3
    # Prefetched behind the blocked task, on a quiet machine (a loaded one may claim one
    # at a time: then the claim itself refuses them, and the invariant still holds).
    with contextlib.suppress(liteq.TimeoutError):
        wait_for(lambda: all(tasks.app.broker.is_leased(i) for i in ids), timeout=10)
    tasks.app.control.revoke(ids)
    gate.touch()
    for task_id in ids:
        res = tasks.app.AsyncResult(task_id)
        wait_for(lambda res=res: res.state == "REVOKED", timeout=10, message=task_id)
    assert not out.exists()  # none of them started
    assert tasks.add.delay(2, 2).get(timeout=10) == 4
