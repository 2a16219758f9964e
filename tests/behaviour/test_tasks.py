"""Task definitions as Celery users write them: decorator forms, bind, base classes."""

from __future__ import annotations

import pytest

import liteq
from liteq import LiteQ, Task
from tests.conftest import Project


def test_calling_a_task_runs_it_here_and_now(project: Project) -> None:
    tasks = project.module()
    assert tasks.add(4, 6) == 10
    assert tasks.app.broker.depth() == {}


def test_decorator_forms_and_names(tmp_path) -> None:
    app = LiteQ("proj", broker=str(tmp_path / "t.db"))

    @app.task
    def plain(x):
        return x

    @app.task()
    def empty_parens(x):
        return x

    @app.task(name="explicit", bind=True, max_retries=5, default_retry_delay=1,
              acks_late=True, priority=3, queue="q", rate_limit="10/s")
    def bound(self, x):
        return self.name, x

    assert plain.name.endswith(".plain") and empty_parens.name.endswith(".empty_parens")
    assert bound.name == "explicit" and bound.max_retries == 5 and bound.acks_late is True
    assert bound(1) == ("explicit", 1)
    assert app.tasks["explicit"] is bound
    assert repr(bound) == "<@task: explicit>"
    with pytest.raises(liteq.ImproperlyConfigured, match=r"unknown task option.*'retries_max'"):
        app.task(retries_max=3)(lambda: None)
    with pytest.raises(liteq.ImproperlyConfigured, match=r"subclass of liteq\.Task"):
        app.task(base=object)(lambda: None)
    with pytest.raises(liteq.NotRegistered):
        _ = app.tasks["nope"]


def test_task_defined_in_main_takes_the_app_name(tmp_path) -> None:
    app = LiteQ("tasks", broker=str(tmp_path / "t.db"))

    def add(x, y):
        return x + y

    add.__module__ = "__main__"
    assert app.task(add).name == "tasks.add"


def test_class_based_task_state_lives_once_per_worker_process(project: Project) -> None:
    """Seed 000 §2.0: a DatabaseTask base keeps one connection per worker process."""
    tasks = project.module()
    project.worker("-c", "2", pool="prefork")
    infos = [tasks.connection_info.delay().get(timeout=15) for _ in range(20)]
    by_pid: dict[int, set[int]] = {}
    for info in infos:
        by_pid.setdefault(info["pid"], set()).add(info["created"])
    assert all(len(created) == 1 for created in by_pid.values()), by_pid


def test_class_task_registered_by_hand(tmp_path) -> None:
    app = LiteQ("proj", broker=str(tmp_path / "t.db"))

    class Multiply(Task):
        name = "multiply"

        def run(self, x, y):
            return x * y

    task = app.register_task(Multiply())
    assert task(3, 4) == 12
    assert task.apply((5, 6)).get() == 30


def test_eager_mode_runs_through_the_same_path(tmp_path) -> None:
    app = LiteQ("proj", broker=str(tmp_path / "t.db"), task_always_eager=True)
    events = []

    class Hooked(Task):
        def on_success(self, retval, task_id, args, kwargs):
            events.append(("success", retval))

        def after_return(self, status, retval, task_id, args, kwargs, einfo):
            events.append(("after_return", status))

    @app.task(base=Hooked)
    def double(x):
        return 2 * x

    @app.task
    def broken():
        raise KeyError("k")

    res = double.delay(21)
    assert isinstance(res, liteq.EagerResult)
    assert res.get() == 42 and res.successful()
    assert events == [("success", 42), ("after_return", "SUCCESS")]
    failed = broken.delay()
    assert failed.failed() and isinstance(failed.result, KeyError)
    with pytest.raises(KeyError):
        failed.get()
    app.conf.task_eager_propagates = True
    with pytest.raises(KeyError):
        broken.delay()
    assert app.broker.depth() == {}


def test_shared_task_uses_the_current_app(tmp_path) -> None:
    @liteq.shared_task
    def ping():
        return "pong"

    app = LiteQ("proj", broker=str(tmp_path / "t.db"), task_always_eager=True)
    assert ping.app is app
    assert ping.delay().get() == "pong"


def test_async_def_tasks_run(project: Project) -> None:
    tasks = project.module(
        """
        import asyncio
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@")

        @app.task
        async def later(x):
            await asyncio.sleep(0.01)
            return x + 1
        """
    )
    project.worker()
    assert tasks.later.delay(1).get(timeout=10) == 2
    assert tasks.later.apply((2,)).get() == 3
