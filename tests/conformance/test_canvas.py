"""Celery's "Canvas: Designing Work-flows" page, with only the import and the URL changed.

docs/userguide/canvas.rst (Celery 5.7): signatures, partials, immutability, callbacks,
chains (``parent``, ``children``, ``collect()``), groups (callbacks, errbacks, results,
unrolling), chords (errors, errbacks), map/starmap and chunks. The stamping API
(Celery 5.3) is not covered: liteq has none.
"""

from __future__ import annotations

import re

import pytest

from liteq import ChordError, Signature, chain, chord, group, signature
from tests.conformance.conftest import Page, PageFactory

FILES = {
    "tasks.py": """
        import os

        from liteq import Celery

        app = Celery('tasks', broker='@BROKER@')
        HERE = os.path.dirname(os.path.abspath(__file__))
        ERRORS = os.path.join(HERE, 'errors')  # the page writes to /var/errors
        os.makedirs(ERRORS, exist_ok=True)


        @app.task
        def add(x, y):
            return x + y


        @app.task
        def mul(x, y):
            return x * y


        @app.task
        def tsum(numbers):
            return sum(numbers)


        @app.task
        def subtract(x, y):
            return x - y


        @app.task
        def reset_buffers():
            with open(os.path.join(HERE, 'buffers.log'), 'a') as handle:
                handle.write('reset\\n')
            return 'reset'


        @app.task
        def log_result(value):
            print(f'log_result got {value!r}')


        @app.task
        def log_error(request, exc, traceback):
            with open(os.path.join(ERRORS, request.id), 'a') as fh:
                print('--\\n\\n{0} {1} {2}'.format(
                    request.id, exc, traceback), file=fh)


        @app.task
        def fail():
            raise KeyError('fail')


        @app.task
        def raising_task():
            raise ValueError('something something')


        @app.task
        def on_chord_error(request, exc, traceback):
            print('Task {0!r} raised error: {1!r}'.format(request.id, exc))


        @app.task
        def import_contact(contact):
            return contact


        @app.task
        def notify_complete(import_id):
            return f'import {import_id} complete'


        @app.task
        def create_user(username, first, last, email):
            return username


        @app.task
        def import_contacts(username):
            return f'contacts of {username}'


        @app.task
        def send_welcome_email(username):
            return f'welcome {username}'
        """,
}


@pytest.fixture
def canvas(page: PageFactory) -> Page:
    return page(FILES, "-l", "INFO")


def test_signatures_and_their_fields(canvas: Page) -> None:
    add = canvas.module("tasks").add
    assert repr(signature('tasks.add', args=(2, 2), countdown=10)) == "tasks.add(2, 2)"
    assert repr(add.signature((2, 2), countdown=10)) == "tasks.add(2, 2)"
    assert repr(add.s(2, 2)) == "tasks.add(2, 2)"
    assert repr(add.s(2, 2, debug=True)) == "tasks.add(2, 2, debug=True)"
    s = add.signature((2, 2), {'debug': True}, countdown=10)
    assert (s.args, s.kwargs, s.options) == ((2, 2), {'debug': True}, {'countdown': 10})
    assert add(2, 2) == 4
    assert add.s(2, 2)() == 4, "calling a signature runs it here"
    # The page prints ``proj.tasks.add(2, 2)`` for a module named tasks; Celery prints
    # the task's name, ``tasks.add(2, 2)``.
    assert repr(add.s(2, 2).set(countdown=1)) == "tasks.add(2, 2)"
    assert add.s(2, 2).set(countdown=1).options == {'countdown': 1}
    s = add.s(2)
    assert repr(s.clone(args=(4,), kwargs={'debug': True})) == "tasks.add(4, 2, debug=True)"


def test_chain_and_group_shapes(canvas: Page) -> None:
    """Group unrolling: a one-task group in a chain is that task; a group followed by a
    task becomes a chord (what Celery 5.7's chain holds in ``.tasks``)."""
    add = canvas.module("tasks").add
    g = group(add.s(2, 2), add.s(4, 4))
    assert len(g.tasks) == 2
    c = chain(add.s(2, 2), group(add.s(1)), add.s(1))
    assert len(c.tasks) == 3 and not any(isinstance(t, group) for t in c.tasks), c.tasks
    c = chain(add.s(2, 2), group(add.s(1), add.s(2)), add.s(1))
    assert len(c.tasks) == 2 and isinstance(c.tasks[1], chord), c.tasks
    c = chain(group(add.s(1, 1)), add.s(2))
    assert len(c.tasks) == 2 and c.tasks[0] == add.s(1, 1), c.tasks


def test_partials(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    add, subtract = tasks.add, tasks.subtract
    partial = add.s(2)          # incomplete signature
    assert partial.delay(4).get(timeout=10) == 6            # 4 + 2
    assert partial.apply_async((4,)).get(timeout=10) == 6   # same
    partial = subtract.s(10)    # incomplete: second arg only
    assert partial.delay(30).get(timeout=10) == 20          # -> subtract(30, 10) = 20
    s = add.signature((2, 2), countdown=10)
    assert s.apply_async(countdown=1).get(timeout=5) == 4, "countdown is now 1"
    # >>> s = add.s(2, 2); s.delay(debug=True)   # -> add(2, 2, debug=True)
    # add takes no ``debug``: real Celery refuses it when sending.
    with pytest.raises(TypeError, match="debug"):
        add.s(2, 2).delay(debug=True)


def test_immutable_callbacks_get_no_result(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    add, reset_buffers = tasks.add, tasks.reset_buffers
    assert add.apply_async((2, 2), link=reset_buffers.signature(immutable=True)).get(
        timeout=10) == 4
    assert add.apply_async((2, 2), link=reset_buffers.si()).get(timeout=10) == 4
    assert canvas.file_lines("buffers.log", count=2) == ["reset", "reset"]


def test_tilde_applies_and_gets(canvas: Page) -> None:
    add = canvas.module("tasks").add
    assert ~add.s(2, 2) == 4, "~sig is sig.apply_async().get()"


def test_callbacks_get_the_result_as_first_argument(canvas: Page) -> None:
    add = canvas.module("tasks").add
    res = add.apply_async((2, 2), link=add.s(8))
    assert res.get(timeout=10) == 4
    assert [child.get(timeout=10) for child in res.children] == [12], "4 + 8"


def test_simple_chains(canvas: Page) -> None:
    add = canvas.module("tasks").add
    res = chain(add.s(2, 2), add.s(4), add.s(8))()
    assert res.get(timeout=10) == 16
    assert (add.s(2, 2) | add.s(4) | add.s(8))().get(timeout=10) == 16


def test_immutable_chain_and_its_parents(canvas: Page) -> None:
    add = canvas.module("tasks").add
    res = (add.si(2, 2) | add.si(4, 4) | add.si(8, 8))()
    assert res.get(timeout=10) == 16
    assert res.parent.get(timeout=10) == 8
    assert res.parent.parent.get(timeout=10) == 4


def test_simple_group_and_chords(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    add, tsum = tasks.add, tasks.tsum
    res = group(add.s(i, i) for i in range(10))()
    assert res.get(timeout=10) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    res = chord((add.s(i, i) for i in range(10)), tsum.s())()
    assert res.get(timeout=10) == 90
    contacts, import_id = ["ann", "bob"], 42
    res = chord((tasks.import_contact.s(c) for c in contacts),
                tasks.notify_complete.si(import_id)).apply_async()
    assert res.get(timeout=10) == "import 42 complete", "an immutable chord body"


def test_combining_chains(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    add, mul, tsum = tasks.add, tasks.mul, tasks.tsum
    c1 = (add.s(4) | mul.s(8))
    assert c1(16).get(timeout=10) == 160, "(16 + 4) * 8"
    c2 = (add.s(4, 16) | mul.s(2) | (add.s(4) | mul.s(8)))
    assert c2().get(timeout=10) == 352, "((4 + 16) * 2 + 4) * 8"
    c3 = (group(add.s(i, i) for i in range(10)) | tsum.s())
    assert c3().get(timeout=10) == 90


def test_a_group_at_the_end_of_a_chain_gets_the_result(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    new_user_workflow = (tasks.create_user.s() | group(
                         tasks.import_contacts.s(),
                         tasks.send_welcome_email.s()))
    res = new_user_workflow.delay(username='artv',
                                  first='Art',
                                  last='Vandelay',
                                  email='art@vandelay.com')
    assert res.get(timeout=10) == ["contacts of artv", "welcome artv"]
    add = tasks.add
    res = (add.s(4, 4) | group(add.si(i, i) for i in range(10)))()
    assert res.get(timeout=10) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert res.parent.get(timeout=10) == 8


def test_link_children_and_collect(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    res = tasks.add.apply_async((2, 2), link=tasks.mul.s(16))
    assert res.get(timeout=10) == 4
    assert len(res.children) == 1, res.children
    assert res.children[0].get(timeout=10) == 64
    collected = [(r.id, value) for r, value in res.collect()]
    assert collected == [(res.id, 4), (res.children[0].id, 64)], collected
    # The rest of the result graph API (celery.result.AsyncResult): iterdeps, get_leaf.
    edges = [(parent.id if parent else None, node.id) for parent, node in res.iterdeps()]
    assert edges == [(None, res.id), (res.id, res.children[0].id)], edges
    assert res.get_leaf() == 64


def test_signatures_take_several_links(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    s = tasks.add.s(2, 2)
    s.link(tasks.mul.s(4))
    s.link(tasks.log_result.s())
    res = s.delay()
    assert res.get(timeout=10) == 4
    canvas.wait_for_output("log_result got 4")
    assert res.children[0].get(timeout=10) == 16


def test_on_error_calls_the_errback_with_the_request(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    res = tasks.fail.s().on_error(tasks.log_error.s()).delay()
    with pytest.raises(KeyError):
        res.get(timeout=10)
    lines = canvas.file_lines(f"errors/{res.id}", count=3)
    assert lines[:2] == ["--", ""] and lines[2].startswith(f"{res.id} 'fail'"), lines


def test_chain_results_walk_up_by_parent(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    add, mul = tasks.add, tasks.mul
    res = chain(add.s(4, 4), mul.s(8), mul.s(10))()
    assert res.get(timeout=10) == 640
    assert res.parent.get(timeout=10) == 64
    assert res.parent.parent.get(timeout=10) == 8
    assert res.parent.parent.parent is None
    assert (add.s(2, 2) | mul.s(8) | mul.s(10)).apply_async().get(timeout=10) == 320


def test_groups(canvas: Page) -> None:
    add = canvas.module("tasks").add
    g = group(add.s(2, 2), add.s(4, 4))
    res = g()
    assert res.get(timeout=10) == [4, 8]
    assert group(add.s(i, i) for i in range(100))().get(timeout=20) == [
        2 * i for i in range(100)]


def test_group_errbacks_run_once_per_failed_task(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    g = group(tasks.fail.s(), tasks.fail.s())
    g.link_error(tasks.log_error.s())
    res = g()
    with pytest.raises(KeyError):
        res.get(timeout=10)
    for member in res.results:
        assert canvas.file_lines(f"errors/{member.id}", count=3)[2].startswith(member.id)


def test_group_results(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    add = tasks.add
    job = group([
                add.s(2, 2),
                add.s(4, 4),
                add.s(8, 8),
                add.s(16, 16),
                add.s(32, 32),
    ])
    result = job.apply_async()
    assert result.get(timeout=10) == [4, 8, 16, 32, 64]
    assert result.ready() is True      # have all subtasks completed?
    assert result.successful() is True  # were all subtasks successful?
    assert result.failed() is False
    assert result.waiting() is False
    assert result.completed_count() == 5
    assert result.join(timeout=10) == [4, 8, 16, 32, 64]
    # Polling a group by id from another process (GroupResult.save/restore).
    result.save()
    restored = tasks.app.GroupResult.restore(result.id)
    assert restored is not None, "GroupResult.restore() found no saved group"
    assert [r.id for r in restored.results] == [r.id for r in result.results]
    assert restored.get(timeout=10) == [4, 8, 16, 32, 64]


def test_result_set(canvas: Page) -> None:
    """``celery.result.ResultSet`` (API reference): a set of results joined together."""
    # Imported here so that a missing name fails this test only.
    from liteq.result import ResultSet

    add = canvas.module("tasks").add
    results = ResultSet([add.delay(1, 1), add.delay(2, 2)])
    assert results.join(timeout=10) == [2, 4]
    assert results.ready() and results.successful() and results.completed_count() == 2


def test_group_unrolling_when_chained(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    add, tsum = tasks.add, tasks.tsum
    assert chain(add.s(2, 2), group(add.s(1)), add.s(1))().get(timeout=10) == 6
    # With two tasks the group becomes a chord: its body gets the list (the page's
    # add(list, 1) would fail; tsum takes the list, as the page advises).
    assert chain(add.s(2, 2), group(add.s(1), add.s(2)), tsum.s())().get(timeout=10) == 11
    assert chain(group(add.s(1, 1)), add.s(2))().get(timeout=10) == 4


def test_chords(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    add, tsum = tasks.add, tasks.tsum
    assert chord(add.s(i, i)
                 for i in range(100))(tsum.s()).get(timeout=30) == 9900
    callback = tsum.s()
    header = [add.s(i, i) for i in range(100)]
    result = chord(header)(callback)
    assert result.get(timeout=30) == 9900


def test_chord_error_names_the_failed_dependency(canvas: Page) -> None:
    """The page: the callback fails with ChordError "Dependency <id> raised ValueError(...)".

    (Real Celery 5.7 with a Redis backend re-raises the header's ValueError from
    ``get()`` instead; its errbacks do receive the ChordError.)
    """
    tasks = canvas.module("tasks")
    c = chord([tasks.add.s(4, 4), tasks.raising_task.s(), tasks.add.s(8, 8)], tasks.tsum.s())
    result = c()
    with pytest.raises(ChordError) as raised:
        result.get(timeout=10)
    assert re.search(r"Dependency \S+ raised ValueError\('something something'\)",
                     str(raised.value)), str(raised.value)
    assert result.traceback, "result.traceback is empty"


def test_chord_errback_gets_the_callback_request(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    add = tasks.add
    c = (group([add.s(i, i) for i in range(3)] + [tasks.raising_task.s()]) |
         tasks.tsum.s().on_error(tasks.on_chord_error.s())).delay()
    with pytest.raises((ChordError, ValueError)):
        c.get(timeout=10)
    # What Celery 5.7 prints: Task '<callback id>' raised error: ChordError("Dependency ...
    canvas.wait_for_output(f"Task {c.id!r} raised error: ChordError(")


def test_map_and_starmap(canvas: Page) -> None:
    tasks = canvas.module("tasks")
    assert ~tasks.tsum.map([list(range(10)), list(range(100))]) == [45, 4950]
    assert ~tasks.add.starmap(zip(range(10), range(10))) == [  # noqa: B905 - the page's own line
        0, 2, 4, 6, 8, 10, 12, 14, 16, 18]


def test_chunks(canvas: Page) -> None:
    add = canvas.module("tasks").add
    expected = [[20 * row + 2 * i for i in range(10)] for row in range(10)]
    res = add.chunks(zip(range(100), range(100)), 10)()  # noqa: B905 - the page's own line
    assert res.get(timeout=20) == expected
    assert add.chunks(zip(range(100), range(100)), 10).apply_async().get(  # noqa: B905 - the page's own line
        timeout=20) == expected
    as_group = add.chunks(zip(range(100), range(100)), 10).group()  # noqa: B905 - the page's own line
    assert as_group().get(timeout=20) == expected
    skewed = add.chunks(zip(range(100), range(100)), 10).group().skew(start=1, stop=10)  # noqa: B905 - the page's own line
    assert [t.options.get("countdown") for t in skewed.tasks] == [
        1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]


def test_signature_is_a_dict_that_travels(canvas: Page) -> None:
    """"A signature ... can be passed to functions or even serialized and sent across
    the wire": a signature rebuilt from its dict calls the same task."""
    add = canvas.module("tasks").add
    sent = dict(add.s(2, 2))
    rebuilt = signature(sent, app=canvas.module("tasks").app)
    assert isinstance(rebuilt, Signature)
    assert rebuilt.delay().get(timeout=10) == 4
