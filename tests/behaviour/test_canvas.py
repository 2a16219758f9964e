"""The canvas with real workers: chains, groups, callbacks and chords, on each transport."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from liteq import ChordError, chain, chord, group
from tests.conftest import TASKS, Project

CANVAS = TASKS + '''

@app.task
def tsum(numbers):
    return sum(numbers)


@app.task
def noted(task_id, path):
    with open(path, "a") as handle:
        handle.write(f"{task_id}\\n")
    return task_id


@app.task(bind=True, max_retries=3)
def flaky(self, path, value):
    """Fails on its first try for each value, then succeeds."""
    marker = f"{path}.{value}"
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise self.retry(countdown=0)
    return value
'''


def lines(path: Path, timeout: float = 10.0, count: int = 1) -> list[str]:
    """The lines of a file a task writes, once it has ``count`` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            found = path.read_text().split()
            if len(found) >= count:
                return found
        time.sleep(0.02)
    return path.read_text().split() if path.exists() else []


def drained(app, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until no message is left in the store (waiting, scheduled or running)."""
    deadline = time.monotonic() + timeout
    while any(depth.total for depth in app.broker.depth().values()):
        assert time.monotonic() < deadline, app.broker.depth()
        time.sleep(0.02)


def test_a_chain_passes_each_result_on(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    result = (tasks.add.s(2, 2) | tasks.add.s(4) | tasks.add.s(8))()
    assert result.get(timeout=10) == 16
    assert chain(tasks.add.s(1, 1), tasks.add.si(5, 5)).delay().get(timeout=10) == 10


def test_a_group_runs_every_task_and_keeps_their_order(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker("-c", "2", pool="prefork")
    result = group(tasks.add.s(i, i) for i in range(20))()
    assert result.get(timeout=10) == [2 * i for i in range(20)]
    assert result.completed_count() == 20 and result.successful()


def test_link_and_link_error_callbacks_run(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    out, errors = project.root / "out", project.root / "errors"
    tasks.add.apply_async((2, 2), link=tasks.noted.s(str(out)))
    assert lines(out) == ["4"]
    failed = tasks.fail.apply_async(("no",), link_error=tasks.noted.s(str(errors)))
    assert lines(errors) == [failed.id]


def test_a_chord_passes_the_header_results_in_order_to_its_body(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker("-c", "2", pool="prefork")
    result = chord(tasks.add.s(i, i) for i in range(50))(tasks.tsum.s())
    assert result.get(timeout=20) == sum(2 * i for i in range(50))
    assert result.parent.get(timeout=5) == [2 * i for i in range(50)]
    # written as a chain of a group and a task, with a step after the body
    piped = (group(tasks.add.s(i, i) for i in range(5)) | tasks.tsum.s() | tasks.add.s(1))()
    assert piped.get(timeout=20) == 21


def test_a_chord_body_runs_once(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker("-c", "2", pool="prefork")
    project.worker("-c", "2", pool="prefork", wait=True)
    out = project.root / "body"
    header = [tasks.add.s(i, 0) for i in range(200)]
    result = chord(header, tasks.record.si(str(out), "body"))()
    result.get(timeout=30)
    drained(tasks.app)  # every unlock ran: a second body, if any, has run too
    assert len(lines(out)) == 1


def test_a_chord_waits_for_retried_header_tasks(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    marker = str(project.root / "flaky")
    result = chord([tasks.flaky.s(marker, i) for i in range(3)], tasks.tsum.s())()
    assert result.get(timeout=20) == 3


def test_a_failed_header_task_fails_the_body_with_chord_error(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    errors = project.root / "errors"
    body = tasks.tsum.s()
    body.on_error(tasks.noted.s(str(errors)))  # returns the errback, as in Celery
    result = chord([tasks.add.s(1, 1), tasks.fail.s("header broke")], body)()
    with pytest.raises(ChordError, match="header broke"):
        result.get(timeout=20)
    assert result.state == "FAILURE"
    assert lines(errors) == [result.id]


def test_a_chord_with_an_empty_header_calls_its_body_with_nothing(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    assert chord([], tasks.tsum.s())().get(timeout=10) == 0


def test_a_chord_body_can_be_a_chain(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    result = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.tsum.s() | tasks.add.s(10))()
    assert result.get(timeout=20) == 16


def test_a_chord_needs_a_body_and_task_signatures(project: Project) -> None:
    tasks = project.module(CANVAS)
    from liteq import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="needs a body"):
        chord([tasks.add.s(1, 1)]).apply_async()
    with pytest.raises(ImproperlyConfigured, match="header takes task signatures"):
        chord([group(tasks.add.s(1, 1))], tasks.tsum.s())
    with pytest.raises(ImproperlyConfigured, match="start of a chain"):
        chain(tasks.add.s(1, 1), group(tasks.add.s(1), tasks.add.s(2)), tasks.tsum.s())


def test_chords_run_eagerly(project: Project) -> None:
    tasks = project.module(CANVAS)
    tasks.app.conf.task_always_eager = True
    assert chord(tasks.add.s(i, i) for i in range(4))(tasks.tsum.s()).get() == 12
    failed = chord([tasks.fail.s("eager")], tasks.tsum.s())()
    with pytest.raises(ChordError, match="eager"):
        failed.get()
