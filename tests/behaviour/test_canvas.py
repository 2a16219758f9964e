"""The canvas with real workers: chains, groups, callbacks and chords, on each transport."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from liteq import ChordError, chain, chord, group
from tests.conftest import TASKS, Project

CANVAS = TASKS + '''
from liteq import group

@app.task
def tsum(numbers):
    return sum(numbers)


@app.task
def mul(x, y):
    return x * y


@app.task
def echo(*args, **kwargs):
    return [list(args), kwargs]


@app.task(bind=True)
def replaced(self, x):
    """Replaced by ``add(x, 100)``: its caller sees 100 more."""
    return self.replace(add.s(x, 100))


@app.task(bind=True)
def replaced_by_chain(self, x):
    return self.replace(add.s(x, 1) | mul.s(10))


@app.task(bind=True)
def replaced_by_group(self, x):
    return self.replace(group(add.s(x, 1), add.s(x, 2)))


@app.task(bind=True)
def replaced_by_chord(self, x):
    from liteq import chord
    return self.replace(chord([add.s(x, 1), add.s(x, 2)], group(tsum.s(), tsum.s())))


@app.task(bind=True)
def replaced_by_failure(self, message):
    return self.replace(fail.s(message))


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


def test_chords_run_eagerly(project: Project) -> None:
    tasks = project.module(CANVAS)
    tasks.app.conf.task_always_eager = True
    assert chord(tasks.add.s(i, i) for i in range(4))(tasks.tsum.s()).get() == 12
    failed = chord([tasks.fail.s("eager")], tasks.tsum.s())()
    with pytest.raises(ChordError, match="eager"):
        failed.get()


# -- chains: flattening, the last step's result, parents ---------------------------------


def test_a_chain_of_a_chain_returns_the_last_steps_value(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    add, mul = tasks.add, tasks.mul
    assert chain(add.s(4, 4) | mul.s(8))().get(timeout=10) == 64
    assert chain(add.s(4) | mul.s(8))(4).get(timeout=10) == 64
    nested = chain(chain(add.s(1, 1), add.s(1)), chain(mul.s(2), add.s(1)))
    assert [step.task for step in nested.tasks] == [add.name, add.name, mul.name, add.name]
    result = nested.delay()
    assert result.get(timeout=10) == 7
    assert result.parent.get(timeout=10) == 6
    assert result.parent.parent.get(timeout=10) == 3
    assert result.parent.parent.parent.get(timeout=10) == 2
    assert result.parent.parent.parent.parent is None
    assert (chain(add.s(1, 1), add.s(2)) | chain(mul.s(3)))().get(timeout=10) == 12


def test_a_chord_result_has_the_header_as_parent_and_the_chain_goes_on(
        project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    add = tasks.add
    result = chain(add.s(1, 1), chord([add.s(1), add.s(2)], tasks.tsum.s()), add.s(10))()
    assert result.get(timeout=20) == 3 + 4 + 10
    assert result.parent.get(timeout=10) == 7
    assert result.parent.parent.get(timeout=10) == [3, 4]
    assert result.parent.parent.parent.get(timeout=10) == 2


# -- groups inside chains --------------------------------------------------------------


def test_a_group_at_the_end_of_a_chain_gets_the_previous_value(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    add = tasks.add
    result = (add.s(4, 4) | group(add.s(1), add.s(2), tasks.mul.s(3)))()
    assert result.get(timeout=20) == [9, 10, 24]
    assert result.parent.get(timeout=10) == 8
    assert [member.get(timeout=5) for member in result] == [9, 10, 24]


def test_a_group_in_the_middle_of_a_chain_becomes_a_chord(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker("-c", "2", pool="prefork")
    add = tasks.add
    result = chain(add.s(1, 1), group(add.s(1), add.s(2)), tasks.tsum.s(), add.s(100))()
    assert result.get(timeout=20) == 3 + 4 + 100
    assert result.parent.get(timeout=10) == 7
    # a group after a group: the second one's tasks each get the first one's results
    twice = (group(add.s(1, 1), add.s(2, 2)) | group(tasks.tsum.s(), tasks.echo.s()))()
    assert twice.get(timeout=20) == [6, [[[2, 4]], {}]]
    # a group, a group, then a task
    three = chain(group(add.s(1, 1), add.s(2, 2)), group(tasks.tsum.s(), tasks.tsum.s()),
                  tasks.tsum.s())()
    assert three.get(timeout=20) == 12


def test_groups_of_chains_and_chains_of_groups(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker("-c", "2", pool="prefork")
    add, mul = tasks.add, tasks.mul
    result = group(chain(add.s(1, 1), add.s(1)), add.s(2, 2) | mul.s(3), add.s(5, 5))()
    assert result.get(timeout=20) == [3, 12, 10]
    # a chord whose header has a chain in it
    chorded = chord([add.s(1, 1) | mul.s(10), add.s(2, 2)], tasks.tsum.s())()
    assert chorded.get(timeout=20) == 24
    # nested groups are flattened, as in Celery
    assert group(group(add.s(1, 1), add.s(2, 2)), add.s(3, 3))().get(timeout=20) == [2, 4, 6]


# -- chunks, map, starmap --------------------------------------------------------------


def test_chunks_map_and_starmap(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker("-c", "2", pool="prefork")
    add = tasks.add
    pairs = list(zip(range(10), range(10), strict=True))
    expected = [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
    assert add.chunks(pairs, 3)().get(timeout=20) == expected
    assert add.chunks(pairs, 3).apply_async().get(timeout=20) == expected
    assert add.chunks(iter(pairs), 3).group()().get(timeout=20) == expected
    skewed = add.chunks(pairs, 3).group().skew(start=0, step=0.05)()
    assert skewed.get(timeout=20) == expected
    assert tasks.tsum.map([[1, 2], [3, 4, 5]]).delay().get(timeout=20) == [3, 12]
    assert add.starmap([(1, 2), (3, 4)]).apply_async().get(timeout=20) == [3, 7]
    assert ~add.starmap([(5, 5)]) == [10]
    assert ~add.s(2, 3) == 5
    in_chain = (add.s(1, 1) | add.chunks(pairs, 5))()  # chunks ignore the previous value
    assert in_chain.get(timeout=20) == [[0, 2, 4, 6, 8], [10, 12, 14, 16, 18]]


# -- signature forms -------------------------------------------------------------------


def test_signature_forms(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    sig = tasks.echo.signature((2, 2), {"debug": True}, countdown=0.1)
    assert sig.args == (2, 2) and sig.kwargs == {"debug": True}
    assert sig.options["countdown"] == 0.1
    assert sig.delay().get(timeout=10) == [[2, 2], {"debug": True}]
    frozen = tasks.add.s(1, 2)
    promised = frozen.freeze()
    assert len(promised.id) == 36 and promised.id[14] == "7"  # a UUIDv7, as task ids are
    sent = frozen.delay()
    assert sent.id == promised.id and promised.get(timeout=10) == 3
    members = group(tasks.add.s(1, 1), tasks.add.s(2, 2))
    promised_group = members.freeze()
    sent_group = members.apply_async()
    assert sent_group.id == promised_group.id
    assert [r.id for r in sent_group] == [r.id for r in promised_group]
    assert promised_group.get(timeout=10) == [2, 4]
    steps = chain(tasks.add.s(1, 1), tasks.add.s(1))
    promised_chain = steps.freeze()
    assert steps.delay().id == promised_chain.id
    assert promised_chain.get(timeout=10) == 3 and promised_chain.parent.get(timeout=10) == 2
    clone = tasks.add.s(1).clone((2,), queue="celery")
    assert clone.args == (2, 1) and clone.delay().get(timeout=10) == 3


def test_immutable_links_do_not_receive_the_parents_result(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    out = project.root / "links"
    path = str(out)
    tasks.add.apply_async((2, 2), link=tasks.record.signature((path, "first"), immutable=True))
    tasks.add.apply_async((3, 3), link=tasks.record.si(path, "second"))
    tasks.add.apply_async((4, 4), link=tasks.record.s(path, "third").set(immutable=True))
    assert sorted(lines(out, count=3)) == ["first", "second", "third"]


# -- Task.replace ----------------------------------------------------------------------


def test_a_replaced_task_takes_its_replacements_value(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    result = tasks.replaced.delay(5)
    assert result.get(timeout=10) == 105
    assert tasks.replaced_by_chain.delay(1).get(timeout=10) == 20
    assert tasks.replaced_by_group.delay(1).get(timeout=10) == [2, 3]
    assert tasks.replaced_by_chord.delay(1).get(timeout=10) == [5, 5]


def test_a_chain_goes_on_after_a_replaced_step(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    result = (tasks.add.s(1, 1) | tasks.replaced.s() | tasks.add.s(1))()
    assert result.get(timeout=10) == 103
    assert result.parent.get(timeout=10) == 102
    by_chain = (tasks.replaced_by_chain.s(1) | tasks.mul.s(2) | tasks.add.s(1))()
    assert by_chain.get(timeout=10) == 41


def test_links_and_errbacks_carry_over_to_the_replacement(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    out, errors = project.root / "out", project.root / "errors"
    tasks.replaced.apply_async((1,), link=tasks.noted.s(str(out)))
    assert lines(out) == ["101"]
    failed = tasks.replaced_by_failure.apply_async(("replaced",),
                                                   link_error=tasks.noted.s(str(errors)))
    with pytest.raises(ValueError, match="replaced"):
        failed.get(timeout=10)
    assert lines(errors) == [failed.id]


def test_a_replaced_task_counts_once_in_its_chord(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker("-c", "2", pool="prefork")
    out = project.root / "body"
    header = [tasks.replaced.s(1), tasks.add.s(2, 2), tasks.replaced_by_chain.s(1)]
    result = chord(header, tasks.noted.s(str(out)))()
    assert result.get(timeout=20) == [101, 4, 20]
    drained(tasks.app)  # a second body, had the replaced tasks counted twice, has run too
    assert out.read_text().splitlines() == ["[101, 4, 20]"]


def test_a_step_that_cannot_take_the_previous_value_fails_loudly(project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    result = (tasks.add.s(1, 1) | tasks.add.s(1, 2))()  # add() takes two arguments
    with pytest.raises(TypeError, match="add"):
        result.parent.get(timeout=10)
    assert result.state == "PENDING"  # the step never ran, as in Celery
    assert tasks.add.delay(2, 2).get(timeout=10) == 4  # the worker goes on


def test_replace_with_a_bad_signature_fails_the_task(project: Project) -> None:
    tasks = project.module(CANVAS + '''

@app.task(bind=True)
def replaced_badly(self):
    return self.replace(chain())


from liteq import chain
''')
    project.worker()
    from liteq import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="empty chain"):
        tasks.replaced_badly.delay().get(timeout=10)


def test_a_chains_link_follows_its_last_step_and_errbacks_cover_every_step(
        project: Project) -> None:
    tasks = project.module(CANVAS)
    project.worker()
    out, errors = project.root / "out", project.root / "errors"
    done = chain(tasks.add.s(1, 1), tasks.add.s(1)).apply_async(link=tasks.noted.s(str(out)))
    assert done.get(timeout=10) == 3
    assert lines(out) == ["3"]
    failed = chain(tasks.add.s(1, 1), tasks.fail.s(), tasks.add.s(1)).apply_async(
        link_error=tasks.noted.s(str(errors)))
    with pytest.raises(ValueError, match="2"):
        failed.parent.get(timeout=10)
    assert lines(errors) == [failed.parent.id]
    drained(tasks.app)
    assert lines(out) == ["3"] and failed.state == "PENDING"
