"""``liteq retry``: failed tasks sent again with their arguments, on each transport."""

from __future__ import annotations

import re

from tests.conftest import TASKS, Project

FIXABLE = TASKS + '''

@app.task
def fixable(path, value):
    """Fails until the file ``path`` exists (the "bug" is fixed by creating it)."""
    if not os.path.exists(path):
        raise RuntimeError(f"not fixed yet: {value}")
    return value * 2
'''


def retried_ids(output: str) -> dict[str, str]:
    return dict(re.findall(r"^(\S+) \S+: retried as (\S+)$", output, re.MULTILINE))


def test_a_failed_task_is_sent_again_with_its_arguments(project: Project) -> None:
    tasks = project.module(FIXABLE)
    project.worker()
    fix = project.root / "fixed"
    first = tasks.fixable.delay(str(fix), 21)
    assert first.get(timeout=10, propagate=False) and first.state == "FAILURE"
    fix.touch()
    done = project.liteq("retry", first.id, "-b", project.location)
    assert done.returncode == 0, done.stderr
    new_id = retried_ids(done.stdout)[first.id]
    assert new_id != first.id
    assert tasks.app.AsyncResult(new_id).get(timeout=10) == 42
    assert first.state == "FAILURE"  # the old record stays, marked
    again = project.liteq("retry", first.id, "-b", project.location)
    assert again.returncode == 1 and f"retried already, as {new_id}" in again.stderr


def test_retry_failed_sends_each_failure_once(project: Project) -> None:
    tasks = project.module(FIXABLE)
    project.worker()
    fix = project.root / "fixed"
    failures = [tasks.fixable.delay(str(fix), n) for n in range(5)]
    ok = tasks.add.delay(1, 1)
    other = tasks.fail.delay("another task")
    for result in [*failures, ok, other]:
        result.get(timeout=10, propagate=False)
    fix.touch()
    name = tasks.fixable.name
    done = project.liteq("retry", "--failed", "--task", name, "-b", project.location)
    assert done.returncode == 0, done.stderr
    mapping = retried_ids(done.stdout)
    assert set(mapping) == {result.id for result in failures}
    assert "Retried 5 failed tasks." in done.stdout
    values = [tasks.app.AsyncResult(mapping[r.id]).get(timeout=10) for r in failures]
    assert values == [0, 2, 4, 6, 8]
    again = project.liteq("retry", "--failed", "--task", name, "-b", project.location)
    assert again.returncode == 0 and "Retried 0 failed tasks." in again.stdout


def test_an_expired_task_can_be_sent_again(project: Project) -> None:
    tasks = project.module(FIXABLE)
    project.worker()
    expired = tasks.add.apply_async((1, 2), expires=-1)
    assert expired.get(timeout=10, propagate=False) is not None
    assert expired.state == "REVOKED"
    done = project.liteq("retry", expired.id, "-b", project.location)
    assert done.returncode == 0, done.stderr
    assert tasks.app.AsyncResult(retried_ids(done.stdout)[expired.id]).get(timeout=10) == 3


def test_retry_refuses_what_it_cannot_send_again(project: Project) -> None:
    tasks = project.module(FIXABLE)
    project.worker()
    ok = tasks.add.delay(1, 1)
    assert ok.get(timeout=10) == 2
    done = project.liteq("retry", ok.id, "no-such-id", "-b", project.location)
    assert done.returncode == 1
    assert f"{ok.id}: is SUCCESS; only FAILURE and REVOKED tasks can be retried" in done.stderr
    assert "no-such-id: no such task result" in done.stderr
    usage = project.liteq("retry", "-b", project.location)
    assert usage.returncode == 2 and "give task ids or --failed" in usage.stderr
    both = project.liteq("retry", ok.id, "--failed", "-b", project.location)
    assert both.returncode == 2
