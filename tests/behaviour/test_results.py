"""AsyncResult as a Celery user uses it, against a real worker process."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

import liteq
from liteq import states
from tests.conftest import Project


def test_get_returns_value_and_result_api(project: Project) -> None:
    tasks = project.module()
    project.worker()
    res = tasks.add.delay(4, 4)
    assert res.get(timeout=10) == 8
    assert res.ready() and res.successful() and not res.failed()
    assert res.state == "SUCCESS" == states.SUCCESS
    assert res.status == res.state
    assert res.result == res.info == 8
    assert res.traceback is None
    assert isinstance(res.date_done, datetime)
    assert res.date_done.tzinfo is timezone.utc
    assert abs(res.date_done.timestamp() - time.time()) < 60
    assert res.name == tasks.add.name


def test_failure_reraises_the_task_exception_with_its_own_type(project: Project) -> None:
    tasks = project.module()
    project.worker()
    res = tasks.boom.delay("kaboom")
    with pytest.raises(tasks.Boom, match="kaboom"):
        res.get(timeout=10)
    assert res.failed() and res.ready() and not res.successful()
    assert res.state == "FAILURE"
    assert isinstance(res.result, tasks.Boom)
    assert "Boom: kaboom" in res.traceback
    assert "raise Boom(message)" in res.traceback


def test_get_without_propagate_returns_the_exception(project: Project) -> None:
    tasks = project.module()
    project.worker()
    res = tasks.fail.delay("nope")
    value = res.get(timeout=10, propagate=False)
    assert isinstance(value, ValueError)
    assert value.args == ("nope",)


def test_get_times_out_with_liteq_timeout_error(project: Project) -> None:
    tasks = project.module()
    res = tasks.add.delay(1, 1)  # no worker running
    started = time.monotonic()
    with pytest.raises(liteq.TimeoutError) as caught:
        res.get(timeout=0.3)
    assert 0.25 < time.monotonic() - started < 5
    assert res.id in str(caught.value)
    assert isinstance(caught.value, TimeoutError)  # also the builtin
    assert res.state == "PENDING"


def test_unknown_id_waits_until_the_timeout(project: Project) -> None:
    project.module()
    res = liteq.AsyncResult("no-such-task")
    assert res.state == "PENDING" and not res.ready()
    with pytest.raises(liteq.TimeoutError):
        res.get(timeout=0.2)


def test_ignore_result_get_returns_none_at_once(project: Project) -> None:
    tasks = project.module()
    marker = project.root / "quiet.txt"
    res = tasks.quiet.delay(str(marker))
    started = time.monotonic()
    assert res.get(timeout=10) is None
    assert time.monotonic() - started < 1
    project.worker()
    liteq.testing.wait_for(marker.exists, 10)
    # ...and nothing is stored for it
    assert tasks.app.backend.get_result(res.id) is None


def test_forget_deletes_the_result(project: Project) -> None:
    tasks = project.module()
    project.worker()
    res = tasks.add.delay(2, 2)
    assert res.get(timeout=10) == 4
    res.forget()
    fresh = tasks.app.AsyncResult(res.id)
    assert fresh.state == "PENDING"


def test_received_while_claimed(project: Project) -> None:
    tasks = project.module()
    project.worker()
    res = tasks.sleep.delay(1.5)
    liteq.testing.wait_for(lambda: res.state == "RECEIVED", 10)
    assert res.get(timeout=10) == 1.5


def test_started_is_recorded_with_track_started(project: Project) -> None:
    tasks = project.module(
        """
        import time
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@", task_track_started=True)

        @app.task
        def slow():
            time.sleep(1.5)
            return "done"
        """
    )
    project.worker()
    res = tasks.slow.delay()
    liteq.testing.wait_for(lambda: res.state == "STARTED", 10)
    assert res.get(timeout=10) == "done"


def test_unserializable_result_is_a_failure_naming_it(project: Project) -> None:
    tasks = project.module()
    project.worker()
    res = tasks.unserializable.delay()
    with pytest.raises(liteq.EncodeError, match="cannot serialize the result"):
        res.get(timeout=10)


def test_result_expires_and_the_worker_cleans_up(project: Project) -> None:
    tasks = project.module(
        """
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@", result_expires=1,
                    broker_transport_options={"visibility_timeout": 3})

        @app.task
        def add(x, y):
            return x + y
        """
    )
    project.worker("-A", tasks.__name__, database="")
    res = tasks.add.delay(1, 1)
    assert res.get(timeout=10) == 2
    stored = tasks.app.backend.get_result(res.id)
    assert stored.expires_in == 1
    liteq.testing.wait_for(lambda: tasks.app.backend.get_result(res.id) is None, 15)


def test_result_extended_keeps_the_call(project: Project) -> None:
    tasks = project.module(
        """
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@", result_extended=True)

        @app.task
        def add(x, y, z=0):
            return x + y + z

        @app.task(bind=True)
        def parent(self):
            return add.delay(1, 2).id
        """
    )
    project.worker("-n", "w1@%h")
    res = tasks.add.apply_async((2, 3), {"z": 4}, queue="celery")
    assert res.get(timeout=10) == 9
    fresh = tasks.app.AsyncResult(res.id)
    assert fresh.args == [2, 3] and fresh.kwargs == {"z": 4}
    assert fresh.name == tasks.add.name and fresh.queue == "celery"
    assert fresh.worker.startswith("w1@") and fresh.retries == 0
    assert isinstance(fresh.date_done, datetime)
    assert fresh.parent_id is None and fresh.root_id == res.id
    outer = tasks.parent.delay()
    child = tasks.app.AsyncResult(outer.get(timeout=10))
    child.get(timeout=10)
    assert child.parent_id == outer.id and child.root_id == outer.id


def test_without_result_extended_only_the_name_is_kept(project: Project) -> None:
    tasks = project.module()
    project.worker()
    res = tasks.add.delay(2, 3)
    res.get(timeout=10)
    fresh = tasks.app.AsyncResult(res.id)
    assert fresh.name == tasks.add.name
    assert fresh.args is None and fresh.kwargs is None and fresh.queue is None
    pending = tasks.app.AsyncResult("unknown")
    assert pending.name is None and pending.args is None and pending.date_done is None
