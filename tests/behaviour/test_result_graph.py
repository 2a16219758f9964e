"""Result graphs as Celery users walk them: ``children``, ``collect()``, ``iterdeps()``,
``get_leaf()``, ``ResultSet`` and ``GroupResult.save()``/``restore()``, with real workers
on each transport. Children are stored with the parent's result, so any process sees
them after the fact."""

from __future__ import annotations

import json

import pytest

import liteq
from liteq import GroupResult, ResultSet, chain, group
from liteq.exceptions import IncompleteStream
from liteq.result import AsyncResult, ResultBase, result_from_tuple
from tests.conftest import TASKS, Project

GRAPH = TASKS + '''
from liteq import group


@app.task
def mul(x, y):
    return x * y


@app.task
def spawn(n):
    """Sends n adds one by one, then a group of two."""
    for i in range(n):
        add.delay(i, i)
    group(add.s(10, i) for i in range(2)).delay()
    return n


@app.task
def spawn_then_fail():
    add.delay(1, 1)
    raise ValueError("after sending")


# The example of Celery's ``AsyncResult.collect()`` documentation.
@app.task(trail=True)
def A(how_many):
    return group(B.s(i) for i in range(how_many))()


@app.task(trail=True)
def B(i):
    return pow2.delay(i)


@app.task(trail=True)
def pow2(i):
    return i ** 2


@app.task(trail=False)
def untracked():
    add.delay(1, 2)
    return "sent"
'''


def _kinds(children: list[object]) -> list[str]:
    return sorted(type(child).__name__ for child in children)


def test_children_are_stored_with_the_result(project: Project) -> None:
    tasks = project.module(GRAPH)
    project.worker()
    res = tasks.spawn.delay(2)
    assert res.get(timeout=10) == 2
    children = tasks.app.AsyncResult(res.id).children
    assert _kinds(children) == ["AsyncResult", "AsyncResult", "GroupResult"]
    singles = [c for c in children if not isinstance(c, GroupResult)]
    (members,) = [c for c in children if isinstance(c, GroupResult)]
    assert sorted(c.get(timeout=10) for c in singles) == [0, 2]
    assert members.get(timeout=10) == [10, 11]
    assert all(c.name == tasks.add.name for c in [*singles, *members])


def test_children_are_seen_from_another_process(project: Project) -> None:
    tasks = project.module(GRAPH)
    project.worker()
    res = tasks.spawn.delay(1)
    res.get(timeout=10)
    out = project.run(f"""
        import json
        from {tasks.__name__} import app
        res = app.AsyncResult({res.id!r})
        print(json.dumps([[type(c).__name__, c.get(timeout=10)] for c in res.children]))
    """)
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(out.stdout), key=str) == sorted(
        [["AsyncResult", 0], ["GroupResult", [10, 11]]], key=str)


def test_a_task_that_sends_nothing_has_no_children(project: Project) -> None:
    tasks = project.module(GRAPH)
    project.worker()
    res = tasks.add.delay(1, 1)
    res.get(timeout=10)
    assert tasks.app.AsyncResult(res.id).children == []
    assert tasks.app.AsyncResult("never-sent").children is None


def test_trail_false_records_no_children(project: Project) -> None:
    tasks = project.module(GRAPH)
    project.worker()
    res = tasks.untracked.delay()
    assert res.get(timeout=10) == "sent"
    assert tasks.app.AsyncResult(res.id).children == []


def test_children_of_a_failed_task_are_kept(project: Project) -> None:
    tasks = project.module(GRAPH)
    project.worker()
    res = tasks.spawn_then_fail.delay()
    with pytest.raises(ValueError, match="after sending"):
        res.get(timeout=10)
    (child,) = tasks.app.AsyncResult(res.id).children
    assert child.get(timeout=10) == 2


def test_links_and_the_chain_continuation_are_children(project: Project) -> None:
    tasks = project.module(GRAPH)
    project.worker()
    res = tasks.add.apply_async((2, 2), link=tasks.mul.s(3))
    res.get(timeout=10)
    (linked,) = tasks.app.AsyncResult(res.id).children
    assert linked.get(timeout=10) == 12
    first = tasks.add.s(4, 4)
    first.freeze()
    last = chain(first, tasks.mul.s(8), tasks.mul.s(2))()
    assert last.get(timeout=10) == 128
    (second,) = tasks.app.AsyncResult(first.id).children
    assert second.get(timeout=10) == 64
    assert second.children == [last]


def test_collect_walks_the_graph_as_in_celerys_example(project: Project) -> None:
    tasks = project.module(GRAPH)
    project.worker()
    result = tasks.A.delay(10)
    pairs = list(result.collect(timeout=10))
    assert pairs[0][0] == result
    values = [v for _, v in pairs if not isinstance(v, (ResultBase, tuple, list))]
    assert values == [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
    # each B returned pow2's result: stored as its tuple, read back as a result
    b_value = tasks.B.delay(3).get(timeout=10)
    assert result_from_tuple(b_value, tasks.app).get(timeout=10) == 9


def test_iterdeps_and_get_leaf(project: Project) -> None:
    tasks = project.module(GRAPH)
    waiting = tasks.B.delay(5)  # no worker yet
    with pytest.raises(IncompleteStream):
        list(waiting.iterdeps())
    assert list(waiting.iterdeps(intermediate=True)) == [(None, waiting)]
    project.worker()
    assert waiting.get_leaf() == 25
    edges = list(waiting.iterdeps())
    assert [parent for parent, _ in edges] == [None, waiting]
    graph = waiting.graph
    assert len(graph) == 2 and list(graph[waiting]) == [edges[1][1]]


def test_parent_is_settable(project: Project) -> None:
    tasks = project.module(GRAPH)
    res = tasks.app.AsyncResult("child")
    assert res.parent is None
    res.parent = tasks.app.AsyncResult("parent")
    assert res.parent.id == "parent"
    assert res.as_tuple() == (("child", (("parent", None), None)), None)
    rebuilt = result_from_tuple(res.as_tuple(), tasks.app)
    assert rebuilt == res and rebuilt.parent == res.parent


def test_result_set_waits_and_reports(project: Project) -> None:
    tasks = project.module(GRAPH)
    results = [tasks.add.delay(i, i) for i in range(3)]
    rs = ResultSet(results, app=tasks.app)
    assert rs.waiting() and not rs.ready() and rs.completed_count() == 0
    with pytest.raises(liteq.TimeoutError):
        rs.get(timeout=0.2)
    project.worker()
    assert rs.get(timeout=10) == [0, 2, 4]
    assert rs.join(timeout=10) == rs.join_native(timeout=10) == [0, 2, 4]
    seen: list[tuple[str, int]] = []
    assert rs.join(timeout=10, callback=lambda task_id, value: seen.append((task_id, value))) == []
    assert seen == [(r.id, v) for r, v in zip(results, [0, 2, 4], strict=True)]
    assert rs.ready() and rs.successful() and not rs.failed() and not rs.waiting()
    assert rs.completed_count() == 3 and len(rs) == 3 and list(rs) == results
    assert rs.results == results and rs[1] == results[1]
    rs.add(results[0])
    assert len(rs) == 3  # already a member
    extra = tasks.fail.delay("no")
    rs.update([extra, results[1]])
    assert len(rs) == 4
    with pytest.raises(ValueError, match="no"):
        rs.get(timeout=10)
    assert rs.get(timeout=10, propagate=False)[3].args == ("no",)
    assert rs.failed() and not rs.successful()
    rs.discard(extra)
    rs.discard("not-a-member")
    assert len(rs) == 3 and rs.successful()
    with pytest.raises(KeyError):
        rs.remove("not-a-member")


def test_result_set_revoke(project: Project) -> None:
    tasks = project.module(GRAPH)
    rs = ResultSet([tasks.add.delay(1, 1), tasks.add.delay(2, 2)], app=tasks.app)
    rs.revoke()
    project.worker()
    liteq.testing.wait_for(lambda: all(r.state == "REVOKED" for r in rs), 10)
    assert rs.ready() and not rs.successful()


def test_group_result_save_and_restore(project: Project) -> None:
    tasks = project.module(GRAPH)
    saved = group(tasks.add.s(i, i) for i in range(3))()
    assert isinstance(saved, ResultSet)
    saved.save()
    restored = tasks.app.GroupResult.restore(saved.id)
    assert isinstance(restored, GroupResult)
    assert restored.id == saved.id and restored.results == saved.results
    assert GroupResult.restore(saved.id, app=tasks.app) == saved
    project.worker()
    out = project.run(f"""
        from {tasks.__name__} import app
        restored = app.GroupResult.restore({saved.id!r})
        print(restored.get(timeout=10), restored.completed_count(), restored.ready())
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "[0, 2, 4] 3 True"
    assert tasks.app.GroupResult.restore("no-such-group") is None
    saved.delete()
    assert tasks.app.GroupResult.restore(saved.id) is None


def test_a_saved_group_expires_with_result_expires(project: Project) -> None:
    tasks = project.module(GRAPH.replace('broker="@BROKER@"',
                                         'broker="@BROKER@", result_expires=1'))
    saved = tasks.app.GroupResult("g1", [tasks.app.AsyncResult("a"), AsyncResult("b")])
    saved.save()
    assert tasks.app.GroupResult.restore("g1").results == saved.results
    liteq.testing.wait_for(lambda: tasks.app.GroupResult.restore("g1") is None, 10)


def test_group_result_tuples_round_trip(project: Project) -> None:
    tasks = project.module(GRAPH)
    res = tasks.app.GroupResult("g", [tasks.app.AsyncResult("a"), tasks.app.AsyncResult("b")])
    assert res.as_tuple() == (("g", None), [(("a", None), None), (("b", None), None)])
    rebuilt = result_from_tuple(res.as_tuple(), tasks.app)
    assert isinstance(rebuilt, GroupResult) and rebuilt == res
    assert rebuilt.children == rebuilt.results
    # what a stored json tuple looks like: lists
    assert result_from_tuple(json.loads(json.dumps(res.as_tuple())), tasks.app) == res


def test_bad_result_tuples_and_ids_get_clear_errors(project: Project) -> None:
    tasks = project.module(GRAPH)
    for bad in ("not a tuple", [1, 2, 3], [["id", None], "members"], [[7, None], None]):
        with pytest.raises(ValueError, match="not a result tuple"):
            result_from_tuple(bad, tasks.app)
    with pytest.raises(ValueError, match="needs an id"):
        tasks.app.GroupResult(None, []).save()
    tasks.app.backend.save_group("not-a-group", json.dumps([["x", None], None]).encode(), None)
    with pytest.raises(ValueError, match="is not a group"):
        tasks.app.GroupResult.restore("not-a-group")
