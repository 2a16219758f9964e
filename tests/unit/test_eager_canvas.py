"""The canvas in eager mode (``task_always_eager`` and ``.apply()``): everything runs in
this process through the one execution path, and the broker is never touched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from liteq import ChordError, LiteQ, chain, chord, group


def make_tasks(app: LiteQ, calls: list[tuple[str, object]]) -> SimpleNamespace:
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
    def fail(message):
        raise ValueError(message)

    @app.task
    def note(value, label="link"):
        calls.append((label, value))
        return value

    @app.task(bind=True)
    def replaced(self, x):
        return self.replace(add.s(x, 100))

    @app.task(bind=True)
    def replaced_by_chain(self, x):
        return self.replace(add.s(x, 1) | mul.s(10))

    @app.task(bind=True)
    def replaced_by_group(self, x):
        return self.replace(group(add.s(x, 1), add.s(x, 2)))

    @app.task(bind=True)
    def replaced_by_chord(self, x):
        return self.replace(chord([add.s(x, 1), add.s(x, 2)], group(tsum.s(), tsum.s())))

    return SimpleNamespace(**{task.name.rsplit(".", 1)[-1]: task for task in (
        add, mul, tsum, fail, note, replaced, replaced_by_chain, replaced_by_group,
        replaced_by_chord)})


@pytest.fixture(params=["sqlite", "redis"])
def eager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SimpleNamespace]:
    """An always-eager app whose broker must never be reached: a SQLite file that must
    not be created, or a Redis port nobody listens on."""
    path = tmp_path / "never" / "created.db"
    url = f"sqlite:///{path}" if request.param == "sqlite" else "redis://127.0.0.1:9/0"
    app = LiteQ("eager_canvas", broker=url)
    app.conf.task_always_eager = True
    calls: list[tuple[str, object]] = []
    tasks = make_tasks(app, calls)
    yield SimpleNamespace(app=app, calls=calls, **vars(tasks))
    assert not path.exists() and not path.parent.exists()


def test_eager_chains_return_the_last_value_with_parents(eager: SimpleNamespace) -> None:
    add, mul = eager.add, eager.mul
    assert chain(add.s(4, 4) | mul.s(8))().get() == 64
    assert chain(add.s(4) | mul.s(8))(4).get() == 64
    result = chain(chain(add.s(1, 1), add.s(1)), mul.s(2)).delay()
    assert result.get() == 6
    assert result.parent.get() == 3 and result.parent.parent.get() == 2
    assert result.parent.parent.parent is None
    assert (add.s(2, 2) | add.s(3)).apply_async().get() == 7


def test_eager_groups_and_chords(eager: SimpleNamespace) -> None:
    add = eager.add
    assert group(add.s(i, i) for i in range(5))().get() == [0, 2, 4, 6, 8]
    assert group(add.s(i, i) for i in range(3)).apply_async().get() == [0, 2, 4]
    assert chord(add.s(i, i) for i in range(4))(eager.tsum.s()).get() == 12
    result = chain(add.s(1, 1), group(add.s(1), add.s(2)), eager.tsum.s(), add.s(1))()
    assert result.get() == 8
    assert result.parent.get() == 7
    at_end = (add.s(4, 4) | group(add.s(1), add.s(2)))()
    assert at_end.get() == [9, 10] and at_end.parent.get() == 8
    assert group(add.s(1, 1) | add.s(1), add.s(2, 2))().get() == [3, 4]
    assert (group(add.s(1, 1), add.s(2, 2)) | group(eager.tsum.s(), eager.tsum.s()))().get() \
        == [6, 6]
    body = eager.tsum.s()
    body.on_error(eager.note.s(label="chord errback"))
    failed = chord([eager.fail.s("eager")], body)()
    with pytest.raises(ChordError, match="eager"):
        failed.get()
    assert eager.calls == [("chord errback", failed.id)]


def test_eager_links_and_errbacks_run_here(eager: SimpleNamespace) -> None:
    eager.add.apply_async((2, 2), link=eager.note.s())
    eager.add.apply_async((3, 3), link=eager.note.si("immutable", label="si"))
    failed = eager.fail.apply_async(("no",), link_error=eager.note.s(label="errback"))
    assert failed.state == "FAILURE"
    assert eager.calls == [("link", 4), ("si", "immutable"), ("errback", failed.id)]


def test_eager_chunks_map_starmap(eager: SimpleNamespace) -> None:
    pairs = list(zip(range(5), range(5), strict=True))
    assert eager.add.chunks(pairs, 2)().get() == [[0, 2], [4, 6], [8]]
    assert eager.tsum.map([[1, 2], [3]]).delay().get() == [3, 3]
    assert ~eager.add.starmap([(1, 2), (3, 4)]) == [3, 7]
    assert ~eager.add.s(1, 1) == 2
    in_chain = (eager.add.s(1, 1) | eager.add.chunks(pairs, 4))()
    assert in_chain.get() == [[0, 2, 4, 6], [8]] and in_chain.parent.get() == 2


def test_eager_replace(eager: SimpleNamespace) -> None:
    result = eager.replaced.delay(5)
    assert result.get() == 105 and result.state == "SUCCESS"
    assert eager.replaced_by_chain.delay(1).get() == 20
    assert eager.replaced_by_group.delay(1).get() == [2, 3]
    assert eager.replaced_by_chord.delay(1).get() == [5, 5]
    assert (eager.add.s(1, 1) | eager.replaced.s() | eager.add.s(1))().get() == 103
    eager.replaced.apply_async((1,), link=eager.note.s())
    assert eager.calls == [("link", 101)]


def test_apply_runs_a_canvas_here_without_always_eager(tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    app = LiteQ("apply_canvas", broker=f"sqlite:///{path}")
    calls: list[tuple[str, object]] = []
    tasks = make_tasks(app, calls)
    add = tasks.add
    assert (add.s(2, 2) | tasks.mul.s(3)).apply().get() == 12
    assert group(add.s(1, 1), add.s(2, 2)).apply().get() == [2, 4]
    assert chord([add.s(1, 1), add.s(2, 2)], tasks.tsum.s()).apply().get() == 6
    assert add.apply((1, 2), link=tasks.note.s()).get() == 3
    assert tasks.replaced.apply((1,)).get() == 101
    assert calls == [("link", 3)]
    assert not path.exists()


def test_bad_canvas_input_gets_a_clear_error(eager: SimpleNamespace) -> None:
    from liteq import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="direct call"):
        eager.replaced(1)  # a direct call has no request to replace
    with pytest.raises(ImproperlyConfigured, match="chunk size"):
        eager.add.chunks([(1, 2)], 0)
    with pytest.raises(ImproperlyConfigured, match="empty chain"):
        chain().apply_async()
    with pytest.raises(ImproperlyConfigured, match="header takes task signatures"):
        chord([group(eager.add.s(1, 1))], eager.tsum.s())
    with pytest.raises(ImproperlyConfigured, match="needs a body"):
        chord([eager.add.s(1, 1)]).apply_async()

    @eager.app.task(bind=True)
    def replaced_badly(self):
        return self.replace(chain())

    result = replaced_badly.delay()
    assert result.state == "FAILURE"
    with pytest.raises(ImproperlyConfigured, match="empty chain"):
        result.get()


def test_a_group_of_one_in_a_chain_is_that_task_and_skew_spreads_countdowns(
        eager: SimpleNamespace) -> None:
    add = eager.add
    result = (add.s(1, 1) | group(add.s(1)))()
    assert result.get() == 3 and result.parent.get() == 2
    skewed = group(add.s(i, i) for i in range(4)).skew(start=1, stop=3)
    assert [member.options["countdown"] for member in skewed.tasks] == [1, 2, 3, 3]


def test_a_chunks_signature_survives_a_message(eager: SimpleNamespace) -> None:
    import json

    from liteq import signature

    travelled = signature(json.loads(json.dumps(eager.add.chunks([(1, 2), (3, 4)], 1))),
                          app=eager.app)
    assert travelled.apply_async().get() == [[3], [7]]
