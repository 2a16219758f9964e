"""Celery's "Tasks" page, pasted with only the import and the broker URL changed.

docs/userguide/tasks.rst (Celery 5.7): basics (``shared_task``, decorators, bound tasks,
``base=``), names (``gen_task_name``), the request, logging (``get_task_logger``),
argument checking, retrying (``retry``, ``autoretry_for``, backoff), pydantic,
options (``track_started``, ``ignore_result``, ``rate_limit``), states (custom states,
pickleable exceptions), semipredicates (``Ignore``, ``Reject``), custom task classes
(``DatabaseTask``, ``task_cls``), handlers, and "avoid launching synchronous subtasks".
Also the names real projects import from Celery's API reference (issue 10, item 6):
``Task.replace``, ``current_task`` and ``current_app``.
"""

from __future__ import annotations

import time

import pytest

from liteq import AsyncResult, MaxRetriesExceededError
from liteq.testing import wait_for
from tests.conformance.conftest import Page, PageFactory, write_files
from tests.conftest import Project

FILES = {
    "tasks.py": """
        import os
        import time

        import liteq
        from liteq import Celery, Task, states
        from liteq.exceptions import Ignore, Reject

        app = Celery('tasks', broker='@BROKER@')
        HERE = os.path.dirname(os.path.abspath(__file__))


        def gate(name, timeout=10.0):
            # Wait (bounded) until the test creates the file ``name``.
            deadline = time.monotonic() + timeout
            while not os.path.exists(os.path.join(HERE, name)):
                if time.monotonic() > deadline:
                    raise TimeoutError(name)
                time.sleep(0.01)


        @app.task
        def add(x, y):
            return x + y


        @app.task(typing=False)
        def add_unchecked(x, y):
            return x + y


        @app.task(name='sum-of-two-numbers')
        def named_add(x, y):
            return x + y


        class MyTask(liteq.Task):

            def on_failure(self, exc, task_id, args, kwargs, einfo):
                print('{0!r} failed: {1!r}'.format(task_id, exc))

        @app.task(base=MyTask)
        def add_with_base(x, y):
            raise KeyError()


        @app.task(bind=True)
        def dump_context(self, x, y):
            print('Executing task id {0.id}, args: {0.args!r} kwargs: {0.kwargs!r}'.format(
                    self.request))
            request = self.request
            return {'id': request.id, 'args': list(request.args), 'kwargs': request.kwargs,
                    'retries': request.retries, 'is_eager': request.is_eager,
                    'hostname': request.hostname, 'called_directly': request.called_directly,
                    'root_id': request.root_id, 'parent_id': request.parent_id,
                    'group': request.group,
                    'redelivered': (request.delivery_info or {}).get('redelivered')}


        class LoginError(Exception):
            pass


        def attempt(name):
            # How many times ``name`` ran so far (a file per task id survives retries).
            path = os.path.join(HERE, name)
            with open(path, 'a') as handle:
                handle.write('x')
            with open(path) as handle:
                return len(handle.read())


        @app.task(bind=True)
        def send_twitter_status(self, oauth, tweet):
            try:
                if attempt(self.request.id) < 3:
                    raise LoginError(oauth)
                return tweet
            except LoginError as exc:
                raise self.retry(exc=exc, countdown=0)  # the page waits 3 minutes


        @app.task(bind=True, max_retries=2)
        def always_login_error(self):
            try:
                attempt(self.request.id)
                raise LoginError('nope')
            except LoginError as exc:
                raise self.retry(exc=exc, countdown=0)


        @app.task(bind=True, max_retries=1)
        def retry_without_exc(self):
            raise self.retry(countdown=0)


        class FailWhaleError(Exception):
            pass


        @app.task(bind=True, autoretry_for=(FailWhaleError,),
                  retry_kwargs={'max_retries': 5, 'countdown': 0})
        def refresh_timeline(self, user):
            if attempt(self.request.id) < 3:
                raise FailWhaleError(user)
            return f'timeline of {user}'


        class RequestException(Exception):
            pass


        @app.task(bind=True, autoretry_for=(RequestException,), retry_backoff=True)
        def backoff(self):
            if attempt(self.request.id) < 2:
                raise RequestException('try again')
            return 'ok'


        class BaseTaskWithRetry(Task):
            autoretry_for = (TypeError,)
            max_retries = 5
            retry_backoff = True
            retry_backoff_max = 700
            retry_jitter = False


        @app.task(bind=True, base=BaseTaskWithRetry)
        def class_retry(self):
            if attempt(self.request.id) < 2:
                raise TypeError('once')
            return 'ok'


        @app.task(track_started=True)
        def long_running(name):
            gate(name)
            return 'done'


        @app.task(bind=True)
        def upload_files(self, filenames):
            for i, file in enumerate(filenames):
                if not self.request.called_directly:
                    self.update_state(state='PROGRESS',
                        meta={'current': i, 'total': len(filenames)})
            gate(filenames[0])
            return len(filenames)


        class HttpError(Exception):

            def __init__(self, status_code, headers=None, body=None):
                self.status_code = status_code
                self.headers = headers
                self.body = body

                super(HttpError, self).__init__(status_code, headers, body)


        @app.task
        def fetch(url):
            raise HttpError(404, {'server': 'x'}, 'not found')


        @app.task(bind=True)
        def some_task(self):
            attempt(self.request.id)
            raise Ignore()


        @app.task(bind=True)
        def get_tweets(self, user):
            timeline = [f'{user}: hello']
            if not self.request.called_directly:
                self.update_state(state=states.SUCCESS, meta=timeline)
            raise Ignore()


        @app.task(bind=True, acks_late=True)
        def render_scene(self, path):
            try:
                raise MemoryError(path)
            except MemoryError as exc:
                raise Reject(exc, requeue=False)


        @app.task(bind=True, acks_late=True)
        def requeues(self):
            if not self.request.delivery_info['redelivered']:
                raise Reject('no reason', requeue=True)
            print('received two times')


        class DatabaseTask(Task):
            _db = None

            @property
            def db(self):
                if self._db is None:
                    self._db = {'pid': os.getpid(), 'connected': time.time_ns()}
                return self._db


        @app.task(base=DatabaseTask, bind=True)
        def process_rows(self: Task):
            return self.db


        class HandlerTask(Task):

            def before_start(self, task_id, args, kwargs):
                print(f"Task {task_id} starting with args {args}")

            def on_success(self, retval, task_id, args, kwargs):
                print(f"Task {task_id} succeeded with result: {retval}")

            def on_failure(self, exc, task_id, args, kwargs, einfo):
                print(f"Task {task_id} failed: {exc}")

            def after_return(self, status, retval, task_id, args, kwargs, einfo):
                print(f"Task {task_id} finished with status: {status}")

        @app.task(base=HandlerTask)
        def my_task(x, y):
            return x + y


        @app.task
        def mytask(x, y):
            return x + y


        @app.task
        def update_page_info(url):
            # fetch_page -> parse_page -> store_page
            chain = fetch_page.s(url) | parse_page.s() | store_page_info.s(url)
            chain()


        @app.task
        def update_page_info_synchronously(url):
            page = fetch_page.delay(url).get()
            info = parse_page.delay(page).get()
            store_page_info.delay(url, info)


        @app.task
        def fetch_page(url):
            return f'<html>{url}</html>'


        @app.task
        def parse_page(page):
            return page.upper()


        @app.task(ignore_result=True)
        def store_page_info(info, url):
            with open(os.path.join(HERE, 'pages.log'), 'a') as handle:
                handle.write(f'{url} {info}\\n')
        """,
    # Modules of their own for the snippets that import more names, so that one
    # missing name fails only its tests.
    "shared.py": """
        from liteq import shared_task

        @shared_task
        def add(x, y):
            return x + y
        """,
    "decorated.py": """
        import functools

        from tasks import app


        def decorator1(fun):
            @functools.wraps(fun)
            def wrapper(*args, **kwargs):
                return fun(*args, **kwargs) * 10
            return wrapper


        def decorator2(fun):
            @functools.wraps(fun)
            def wrapper(*args, **kwargs):
                return fun(*args, **kwargs) + 1
            return wrapper


        @app.task
        @decorator2
        @decorator1
        def add(x, y):
            return x + y
        """,
    "logged.py": """
        from liteq.utils.log import get_task_logger

        from tasks import app

        logger = get_task_logger(__name__)

        @app.task(bind=True)
        def add_bound(self, x, y):
            logger.info(self.request.id)
            return x + y

        @app.task
        def add(x, y):
            logger.info('Adding {0} + {1}'.format(x, y))
            return x + y
        """,
    "pyd.py": """
        from typing import Optional

        from pydantic import BaseModel

        from tasks import app

        class ArgModel(BaseModel):
            value: int

        class ReturnModel(BaseModel):
            value: str

        @app.task(pydantic=True)
        def x(arg: ArgModel) -> ReturnModel:
            # args/kwargs type hinted as Pydantic model will be converted
            assert isinstance(arg, ArgModel)

            # The returned model will be converted to a dict automatically
            return ReturnModel(value=f"example: {arg.value}")

        @app.task(pydantic=True)
        def x_optional(arg: Optional[ArgModel] = None) -> Optional[ReturnModel]:
            if arg is None:
                return None
            return ReturnModel(value=f"example: {arg.value}")
        """,
    "replacing.py": """
        from liteq import current_app, current_task

        from tasks import add, app


        @app.task
        def mul(x, y):
            return x * y


        @app.task(bind=True)
        def add_one_later(self, x):
            # Task.replace: the chain goes on with the replacement's result.
            raise self.replace(add.s(x, 1))


        @app.task(bind=True)
        def who_am_i(self):
            return [current_task.request.id == self.request.id, current_app.main]
        """,
}


@pytest.fixture
def tasks_page(page: PageFactory) -> Page:
    return page(FILES, "-l", "INFO")


def test_basics_shared_task_and_decorators(tasks_page: Page) -> None:
    out = tasks_page.run("""
        import tasks, shared
        print(shared.add.delay(2, 2).get(timeout=10))
        """)
    assert out.split() == ["4"], out
    decorated = tasks_page.module("decorated")
    # decorator1 multiplies by ten, decorator2 adds one: (2 + 2) * 10 + 1
    assert decorated.add.delay(2, 2).get(timeout=10) == 41


def test_task_inheritance_on_failure(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    res = tasks.add_with_base.delay(2, 2)
    with pytest.raises(KeyError):
        res.get(timeout=10)
    tasks_page.wait_for_output(f"{res.id!r} failed: KeyError()")


def test_names(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    assert tasks.named_add.name == "sum-of-two-numbers"
    assert tasks.add.name == "tasks.add"
    assert tasks.app.send_task("sum-of-two-numbers", (2, 3)).get(timeout=10) == 5


def test_changing_the_automatic_naming(project: Project) -> None:
    write_files(project, {
        "main.py": """
            from liteq import Celery

            class MyCelery(Celery):

                def gen_task_name(self, name, module):
                    if module.endswith('.tasks'):
                        module = module[:-6]
                    return super().gen_task_name(name, module)

            app = MyCelery('main', broker='@BROKER@')
            """,
        "moduleA/__init__.py": "",
        "moduleA/tasks.py": """
            from main import app

            @app.task
            def taskA():
                return 'A'
            """,
    })
    done = project.run("import moduleA.tasks as t; print(t.taskA.name)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["moduleA.taskA"], done.stdout


def test_the_request(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    res = tasks.dump_context.delay(2, y=3)
    context = res.get(timeout=10)
    assert context["id"] == res.id
    assert (context["args"], context["kwargs"]) == ([2], {"y": 3}), context
    assert context["retries"] == 0
    assert context["is_eager"] is False
    assert context["called_directly"] is False
    assert context["hostname"], "request.hostname is empty"
    assert context["root_id"] == res.id and context["parent_id"] is None
    assert context["group"] is None
    assert context["redelivered"] is False, "delivery_info['redelivered'] on a first delivery"
    tasks_page.wait_for_output(f"Executing task id {res.id}, args: ")


def test_logging_with_get_task_logger(tasks_page: Page) -> None:
    logged = tasks_page.module("logged")
    res = logged.add_bound.delay(1, 2)
    assert res.get(timeout=10) == 3
    assert logged.add.delay(4, 5).get(timeout=10) == 9
    output = tasks_page.wait_for_output("Adding 4 + 5")
    assert res.id in output.split("Adding 4 + 5")[0], "logger.info(self.request.id)"


def test_argument_checking(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    assert isinstance(tasks.add.delay(8, 8), AsyncResult)
    with pytest.raises(TypeError):
        tasks.add.delay(8)
    # typing=False: "Works locally, but the worker receiving the task will raise an error."
    res = tasks.add_unchecked.delay(8)
    assert isinstance(res, AsyncResult)
    with pytest.raises(TypeError):
        res.get(timeout=10)


def test_hiding_arguments_with_argsrepr(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    res = tasks.add.apply_async((2, 3), argsrepr='(<secret-x>, <secret-y>)')
    assert res.get(timeout=10) == 5
    assert tasks.add.s(2, 3).set(kwargsrepr=repr({'card': '**** **** **** 5678'})).delay(
        ).get(timeout=10) == 5


def test_retrying(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    assert tasks.send_twitter_status.delay("oauth", "hi").get(timeout=10) == "hi"
    # max_retries exceeded with exc: the exception itself is re-raised.
    with pytest.raises(tasks.LoginError):
        tasks.always_login_error.delay().get(timeout=10)
    # ... without exc: MaxRetriesExceededError.
    with pytest.raises(MaxRetriesExceededError):
        tasks.retry_without_exc.delay().get(timeout=10)


def test_automatic_retry_for_known_exceptions(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    assert tasks.refresh_timeline.delay("ann").get(timeout=10) == "timeline of ann"
    # retry_backoff=True: the first retry waits up to one second (jitter).
    assert tasks.backoff.delay().get(timeout=10) == "ok"
    # Class attributes: autoretry_for, retry_backoff (1 s), retry_jitter=False.
    started = time.monotonic()
    assert tasks.class_retry.delay().get(timeout=10) == "ok"
    assert time.monotonic() - started >= 0.9, "retry_backoff=True waits 1 s before retry 1"


def test_argument_validation_with_pydantic(tasks_page: Page) -> None:
    pyd = tasks_page.module("pyd")
    result = pyd.x.delay(pyd.ArgModel(value=1))
    assert result.get(timeout=10) == {'value': 'example: 1'}
    result = pyd.x.delay({'value': 1})
    assert result.get(timeout=10) == {'value': 'example: 1'}
    result = pyd.x_optional.delay()
    assert result.get(timeout=10) is None
    result = pyd.x_optional.delay({'value': 1})
    assert result.get(timeout=10) == {'value': 'example: 1'}


def test_track_started_reports_pid_and_hostname(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    res = tasks.long_running.delay("started-gate")
    try:
        wait_for(lambda: res.state == "STARTED", 10, message="state STARTED")
        assert isinstance(res.info, dict) and res.info.get("pid") and res.info.get(
            "hostname"), f"result.info of a STARTED task: {res.info!r}"
    finally:
        (tasks_page.root / "started-gate").touch()
    assert res.get(timeout=10) == "done"


def test_ignore_result_per_call(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    # No result will be stored
    result = tasks.mytask.apply_async((1, 2), ignore_result=True)
    assert result.get(timeout=10) is None
    # Result will be stored
    result = tasks.mytask.apply_async((1, 2), ignore_result=False)
    assert result.get(timeout=10) == 3


def test_custom_states(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    filenames = ["gate-progress", "b", "c"]
    res = tasks.upload_files.delay(filenames)
    try:
        wait_for(lambda: res.state == "PROGRESS", 10, message="state PROGRESS")
        assert res.info == {'current': 2, 'total': 3}, res.info
    finally:
        (tasks_page.root / "gate-progress").touch()
    assert res.get(timeout=10) == 3


def test_pickleable_exceptions_come_back_with_their_arguments(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    with pytest.raises(tasks.HttpError) as raised:
        tasks.fetch.delay("http://example.com").get(timeout=10)
    assert raised.value.args == (404, {'server': 'x'}, 'not found')
    assert raised.value.status_code == 404


def test_ignore_records_no_state(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    res = tasks.some_task.delay()
    wait_for(lambda: (tasks_page.root / res.id).exists(), 10, message="some_task ran")
    # The solo worker runs in order: once this one is done, some_task has finished.
    assert tasks.add.delay(1, 1).get(timeout=10) == 2
    assert res.state == "PENDING", "Ignore: no state is recorded"
    # Storing the result by hand, then Ignore.
    assert tasks.get_tweets.delay("ann").get(timeout=10) == ["ann: hello"]


def test_reject(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    res = tasks.render_scene.delay("/big/scene")
    # Celery 5.7: a Reject without requeue is stored as FAILURE, the reason as result.
    res.get(timeout=5, propagate=False)
    assert res.state == "FAILURE" and res.failed(), res.state
    again = tasks.requeues.delay()
    assert again.get(timeout=10) is None
    tasks_page.wait_for_output("received two times")


def test_database_task_keeps_its_connection(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    first = tasks.process_rows.delay().get(timeout=10)
    second = tasks.process_rows.delay().get(timeout=10)
    assert first == second, "self.db is made once per worker process"


def test_app_wide_task_cls(project: Project) -> None:
    write_files(project, {
        "dbtask.py": """
            from liteq import Task

            class DatabaseTask(Task):
                _db = None

                @property
                def db(self):
                    if self._db is None:
                        self._db = 'connection'
                    return self._db
            """,
        "apptasks.py": """
            from liteq import Celery

            app = Celery('tasks', broker='@BROKER@', task_cls='dbtask:DatabaseTask')

            @app.task
            def process():
                return 'processed'
            """,
    })
    done = project.run("""
        from apptasks import process
        from dbtask import DatabaseTask
        print(isinstance(process, DatabaseTask), process.db, process())
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "connection", "processed"], done.stdout


def test_handlers_run_in_order(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    res = tasks.my_task.delay(2, 3)
    assert res.get(timeout=10) == 5
    output = tasks_page.wait_for_output(f"Task {res.id} finished with status: SUCCESS")
    order = [output.find(f"Task {res.id} starting with args"),
             output.find(f"Task {res.id} succeeded with result: 5"),
             output.find(f"Task {res.id} finished with status: SUCCESS")]
    assert -1 not in order and order == sorted(order), output[-2000:]


def test_a_chain_instead_of_synchronous_subtasks(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    tasks.update_page_info.delay("http://example.com").get(timeout=10)
    lines = tasks_page.file_lines("pages.log")
    assert lines == ["http://example.com <HTML>HTTP://EXAMPLE.COM</HTML>"], lines


def test_synchronous_subtasks_are_refused(tasks_page: Page) -> None:
    """"By default Celery will not allow you to run subtasks synchronously within a
    task": real Celery raises RuntimeError('Never call result.get() within a task!')."""
    tasks = tasks_page.module("tasks")
    worker = tasks_page.project.worker("-Q", "sync")
    try:
        res = tasks.update_page_info_synchronously.apply_async(("http://a",), queue="sync")
        with pytest.raises(RuntimeError, match=r"Never call result\.get"):
            res.get(timeout=5)
    finally:
        worker.stop(timeout=2)  # a worker that blocked in get() is killed, by pid


def test_replace_current_task_and_current_app(tasks_page: Page) -> None:
    replacing = tasks_page.module("replacing")
    # (1 + 1) * 10: the chain continues after the replacement.
    assert (replacing.add_one_later.s(1) | replacing.mul.s(10))().get(timeout=10) == 20
    assert replacing.who_am_i.delay().get(timeout=10) == [True, "tasks"]
