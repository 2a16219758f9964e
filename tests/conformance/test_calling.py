"""Celery's "Calling Tasks" page, pasted with only the import and the broker URL changed.

docs/userguide/calling.rst (Celery 5.7): delay/apply_async, links and errbacks
(``(request, exc, traceback)`` and the one-argument form), on_message, ETA and
countdown, expiration, publish retry, connection errors, serializers, compression,
routing, results options (``ignore_result``, ``result_extended``) and priority.
"""

from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta, timezone

import pytest

from liteq import Celery, TaskRevokedError, group
from tests.conformance.conftest import Page, PageFactory

FILES = {
    "tasks.py": """
        import os
        import time

        from liteq import Celery

        app = Celery('tasks', broker='@BROKER@')
        # "If you'd like to store additional metadata about the task in the result
        # backend set the result_extended setting to True."
        app.conf.result_extended = True
        ORDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'order.log')


        @app.task
        def add(x, y):
            return x + y


        @app.task
        def task(arg1, arg2, kwarg1=None, kwarg2=None):
            return [arg1, arg2, kwarg1, kwarg2]


        @app.task
        def other_task(value):
            return ['other', value]


        @app.task
        def error_handler(request, exc, traceback):
            print('Task {0} raised exception: {1!r}\\n{2!r}'.format(
                  request.id, exc, traceback))


        @app.task(bind=True)
        def hello(self, a, b):
            time.sleep(0.5)  # the page sleeps 1 s between the steps
            self.update_state(state="PROGRESS", meta={'progress': 50})
            time.sleep(0.5)
            self.update_state(state="PROGRESS", meta={'progress': 90})
            time.sleep(0.5)
            return 'hello world: %i' % (a+b)


        @app.task
        def record(value):
            with open(ORDER, 'a') as handle:
                handle.write(f'{value}\\n')
            return value
        """,
    # The page's one-argument errback, in a module of its own (it needs one more name).
    "errbacks.py": """
        from liteq.result import allow_join_result

        from tasks import app


        @app.task
        def on_error(task_id):
            with allow_join_result():
                result = app.AsyncResult(task_id)
                exc = result.get(propagate=False)
                print('Task {0} raised exception: {1!r}'.format(task_id, exc))
        """,
}


@pytest.fixture
def calling(page: PageFactory) -> Page:
    # $ celery -A proj worker -l INFO -Q celery,priority.high  (on the store: modules
    # are imported when their tasks first arrive)
    return page(FILES, "-l", "INFO", "-Q", "celery,priority.high")


def test_delay_apply_async_and_signatures_send_the_same_call(calling: Page) -> None:
    task = calling.module("tasks").task
    expected = [1, 2, "x", "y"]
    assert task.delay(1, 2, kwarg1="x", kwarg2="y").get(timeout=10) == expected
    assert task.apply_async(args=[1, 2], kwargs={"kwarg1": "x", "kwarg2": "y"}).get(
        timeout=10) == expected
    assert task.s(1, 2, kwarg1="x", kwarg2="y").apply_async().get(timeout=10) == expected


def test_link_applies_the_callback_with_the_result(calling: Page) -> None:
    add = calling.module("tasks").add
    res = add.apply_async((2, 2), link=add.s(16))
    assert res.get(timeout=10) == 4
    # "(2 + 2) + 16 = 20"; the callback is the parent's child in the result graph.
    assert len(res.children) == 1, f"res.children is {res.children!r}"
    assert res.children[0].get(timeout=10) == 20


def test_link_error_calls_the_errback_with_request_exc_and_traceback(calling: Page) -> None:
    tasks = calling.module("tasks")
    res = tasks.add.apply_async((2, "2"), link_error=tasks.error_handler.s())
    assert isinstance(res.get(propagate=False, timeout=10), TypeError)
    calling.wait_for_output(f"Task {res.id} raised exception: TypeError(")


def test_a_one_argument_errback_gets_the_task_id(calling: Page) -> None:
    tasks, errbacks = calling.module("tasks"), calling.module("errbacks")
    res = tasks.app.send_task("tasks.add", (2, "2"), link_error=errbacks.on_error.s())
    assert isinstance(res.get(propagate=False, timeout=10), TypeError)
    calling.wait_for_output(
        f"Task {res.id} raised exception: TypeError(\"unsupported operand type(s) for +: "
        "'int' and 'str'\")")


def test_link_takes_a_list_of_callbacks(calling: Page) -> None:
    tasks = calling.module("tasks")
    res = tasks.add.apply_async((2, 2), link=[tasks.add.s(16), tasks.other_task.s()])
    assert res.get(timeout=10) == 4
    assert [child.get(timeout=10) for child in res.children] == [20, ["other", 4]]


def test_on_message_sees_every_state(calling: Page) -> None:
    hello = calling.module("tasks").hello
    seen: list[dict[str, object]] = []

    def on_raw_message(body: dict[str, object]) -> None:
        seen.append(body)

    a, b = 1, 1
    r = hello.apply_async(args=(a, b))
    assert r.get(on_message=on_raw_message, propagate=False, timeout=10) == "hello world: 2"
    states = [(body["status"], body["result"]) for body in seen]
    assert states == [("PROGRESS", {"progress": 50}), ("PROGRESS", {"progress": 90}),
                      ("SUCCESS", "hello world: 2")], states
    assert all(body["task_id"] == r.id for body in seen), seen


def test_countdown_eta_and_own_task_id(calling: Page) -> None:
    add = calling.module("tasks").add
    sent = time.monotonic()
    # The page uses countdown=3; one second shows the same thing, faster.
    by_countdown = add.apply_async((2, 2), countdown=1)
    by_eta = add.apply_async((2, 2), eta=datetime.now(timezone.utc) + timedelta(seconds=1))
    own = add.apply_async((2, 2), task_id=f"my_own_task_id-{calling.project.transport}")
    assert own.id == f"my_own_task_id-{calling.project.transport}"
    assert own.get(timeout=10) == 4
    assert by_countdown.get(timeout=10) == 4
    assert by_eta.get(timeout=10) == 4
    assert time.monotonic() - sent >= 0.9, "countdown=1 ran before its second was up"


def test_expiration(calling: Page) -> None:
    add = calling.module("tasks").add
    # Task expires after one minute from now.
    assert add.apply_async((10, 10), expires=60).get(timeout=10) == 20
    assert add.apply_async((10, 10), {},
                           expires=datetime.now(timezone.utc) + timedelta(days=1)
                           ).get(timeout=10) == 20
    # "When a worker receives an expired task it will mark the task as REVOKED"
    late = add.apply_async((10, 10), expires=datetime.now(timezone.utc) - timedelta(seconds=1))
    with pytest.raises(TaskRevokedError):
        late.get(timeout=10)
    assert late.state == "REVOKED"


def test_message_sending_retry_options(calling: Page) -> None:
    add = calling.module("tasks").add
    assert add.apply_async((2, 2), retry=False).get(timeout=10) == 4
    assert add.apply_async((2, 2), retry=True, retry_policy={
        'max_retries': 3,
        'interval_start': 0,
        'interval_step': 0.2,
        'interval_max': 1,
        'retry_errors': None,
    }).get(timeout=10) == 4


def test_connection_errors_raise_the_tasks_operational_error() -> None:
    """A broker that is down: ``except add.OperationalError`` catches it (no worker)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the socket closes
    app = Celery("down", broker=f"redis://127.0.0.1:{port}/0")

    @app.task
    def add(x, y):  # type: ignore[no-untyped-def]
        return x + y

    assert issubclass(add.OperationalError, Exception)
    with pytest.raises(add.OperationalError):
        add.apply_async((2, 2), retry=False)


def test_serializer_and_compression_options(calling: Page) -> None:
    add = calling.module("tasks").add
    assert add.apply_async((10, 10), serializer='json').get(timeout=10) == 20
    assert add.apply_async((2, 2), compression='zlib').get(timeout=10) == 4


def test_many_calls_as_a_group(calling: Page) -> None:
    add = calling.module("tasks").add
    numbers = [(2, 2), (4, 4), (8, 8), (16, 16)]
    res = group(add.s(i, j) for i, j in numbers).apply_async()
    assert res.get(timeout=10) == [4, 8, 16, 32]


def test_routing_option(calling: Page) -> None:
    add = calling.module("tasks").add
    # The page writes ``add.apply_async(queue='priority.high')``: without arguments real
    # Celery refuses it at once (TypeError: add() missing 2 required positional ...).
    with pytest.raises(TypeError):
        add.apply_async(queue='priority.high')
    assert add.apply_async((2, 2), queue='priority.high').get(timeout=10) == 4


def test_results_options(calling: Page) -> None:
    add = calling.module("tasks").add
    result = add.apply_async((1, 2), ignore_result=True)
    assert result.get(timeout=10) is None
    result = add.apply_async((1, 2), ignore_result=False)
    assert result.get(timeout=10) == 3
    result = add.apply_async((2, 2), headers={"periodic_task_name": "task_name"})
    assert result.get(timeout=10) == 4


def test_result_extended_keeps_name_args_and_kwargs(calling: Page) -> None:
    add = calling.module("tasks").add
    res = add.apply_async((2, 3))
    assert res.get(timeout=10) == 5
    # What real Celery 5.7 gives with result_extended=True (json): a list of args.
    assert (res.name, res.args, res.kwargs) == ("tasks.add", [2, 3], {}), (
        res.name, res.args, res.kwargs)


def test_priority_higher_runs_first(calling: Page) -> None:
    """liteq's contract (AMQP's, RabbitMQ's): 255 is the highest priority and runs first.

    Deliberate difference: Celery on Redis runs the lower number first.
    """
    tasks = calling.module("tasks")
    for value in (0, 255, 5, 9):
        tasks.record.apply_async((value,), queue="prio", priority=value)
    calling.project.worker("-Q", "prio", "--prefetch-multiplier", "1")
    assert calling.file_lines("order.log", count=4) == ["255", "9", "5", "0"]
