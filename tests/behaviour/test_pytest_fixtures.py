"""Celery's test fixtures, as "Testing with Celery" uses them, with only the imports
changed: a small suite run by pytest itself (pytester), on a SQLite file or Redis."""

from __future__ import annotations

import textwrap

import pytest

from tests.conftest import Project, _pythonpath

pytest_plugins = ["pytester"]

#: A Celery suite (celery.contrib.pytest fixtures); @CONFIG@ is its celery_config.
FUNCTION_SCOPED = '''
import threading
import time

import pytest

from liteq import current_task, shared_task
from liteq.contrib.testing.worker import start_worker


@pytest.fixture(scope="session")
def celery_config():
    return @CONFIG@


@shared_task
def shared_mul(x, y):
    return x * y


def test_create_task(celery_app, celery_worker):
    @celery_app.task
    def mul(x, y):
        return x * y

    celery_worker.reload()
    assert mul.delay(4, 4).get(timeout=10) == 16


def test_shared_task_uses_the_test_app(celery_app, celery_worker):
    assert shared_mul.delay(4, 5).get(timeout=10) == 20


def test_worker_runs_in_a_thread_of_this_process(celery_app, celery_worker):
    @celery_app.task(bind=True)
    def where(self):
        return threading.current_thread().name, self.request.id == current_task.request.id

    thread, same = where.delay().get(timeout=10)
    assert thread != threading.current_thread().name and same is True


@pytest.mark.celery(result_extended=True, task_default_queue="marked")
def test_marker_overrides_settings(celery_app):
    assert celery_app.conf.result_extended is True
    assert celery_app.conf.task_default_queue == "marked"


def test_start_worker_threads_pool_stops_warm(celery_app):
    started = threading.Event()

    @celery_app.task
    def slow(seconds):
        started.set()
        time.sleep(seconds)
        return seconds

    with start_worker(celery_app, pool="threads", concurrency=2,
                      perform_ping_check=True) as worker:
        assert worker.is_alive()
        running = slow.delay(0.5)
        # running, not just claimed: a claimed task that has not started goes back
        assert started.wait(10)
    # the block ended while the task ran: a warm stop let it finish and store its result
    assert not worker.is_alive()
    assert running.state == "SUCCESS" and running.get(timeout=1) == 0.5


def test_start_worker_logfile(celery_app, tmp_path):
    from liteq.utils.log import get_task_logger

    logger = get_task_logger("suite.tasks")

    @celery_app.task
    def chatty():
        logger.info("hello from the task")
        logger.debug("too detailed")

    log = tmp_path / "worker.log"
    with start_worker(celery_app, loglevel="info", logfile=str(log)):
        result = chatty.delay()
        result.get(timeout=10)
    text = log.read_text()
    assert f"{chatty.name}[{result.id}]: hello from the task" in text
    assert "too detailed" not in text


def test_tasks_wait_for_a_worker(celery_app):
    @celery_app.task
    def add(x, y):
        return x + y

    result = add.delay(1, 2)
    assert result.state == "PENDING"
    with start_worker(celery_app, perform_ping_check=False):
        assert result.get(timeout=10) == 3
'''

#: The session-scoped fixtures, with the overridable ones overridden.
SESSION_SCOPED = '''
import pytest

from liteq import Task


class MyCustomTaskClass(Task):
    custom = True


@pytest.fixture(scope="session")
def celery_config():
    return @CONFIG@


@pytest.fixture(scope="session")
def celery_parameters():
    return {
        "task_cls": MyCustomTaskClass,
        "strict_typing": False,
    }


@pytest.fixture(scope="session")
def celery_worker_pool():
    return "threads"


@pytest.fixture(scope="session")
def celery_worker_parameters():
    return {
        "queues": ("high-prio", "low-prio"),
        "exclude_queues": ("celery"),
        "concurrency": 2,
        "shutdown_timeout": 30.0,
        "without_heartbeat": False,
    }


@pytest.fixture(scope="session")
def celery_includes():
    return ["session_tasks"]


class Multiply(Task):
    name = "session.multiply"

    def run(self, x, y):
        return x * y


@pytest.fixture(scope="session")
def celery_class_tasks():
    return [Multiply]


def test_session_worker_runs_included_and_class_tasks(celery_session_app,
                                                      celery_session_worker):
    import session_tasks

    assert session_tasks.hello.apply_async(("you",), queue="low-prio").get(timeout=10) \\
        == "hello you"
    assert celery_session_app.send_task("session.multiply", (6, 7),
                                        queue="high-prio").get(timeout=10) == 42
    assert celery_session_worker.queues == ["high-prio", "low-prio"]


def test_same_session_worker_and_app_parameters(celery_session_app, celery_session_worker):
    @celery_session_app.task
    def custom():
        return custom.custom

    assert custom.apply_async(queue="high-prio").get(timeout=10) is True
'''

SESSION_TASKS = '''
from liteq import shared_task


@shared_task
def hello(name):
    return f"hello {name}"
'''

#: use_celery_app_trap: code that reaches for the current app fails loudly.
TRAPPED = '''
import pytest

from liteq import current_app


@pytest.fixture(scope="session")
def use_celery_app_trap():
    return True


@pytest.fixture(scope="session")
def celery_config():
    return @CONFIG@


def test_app_object_works(celery_app, celery_worker):
    @celery_app.task
    def add(x, y):
        return x + y

    assert add.delay(1, 1).get(timeout=10) == 2


def test_current_app_is_trapped(celery_app):
    with pytest.raises(RuntimeError, match="Test depends on current_app"):
        current_app.conf


def test_depends_on_current_app(celery_app, depends_on_current_app):
    assert current_app.conf is celery_app.conf
'''


def _config(project: Project) -> str:
    # Celery suites often say memory://; on SQLite that means the test's own file.
    if project.transport == "sqlite":
        return '{"broker_url": "memory://", "result_backend": "cache+memory://"}'
    return repr({"broker_url": project.broker_url})


def _run(pytester: pytest.Pytester, project: Project, source: str,
         **files: str) -> pytest.RunResult:
    if files:
        pytester.makepyfile(**{name: textwrap.dedent(text) for name, text in files.items()})
    pytester.makepyfile(test_suite=textwrap.dedent(source).replace("@CONFIG@",
                                                                   _config(project)))
    pytester.syspathinsert()
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error",
                                         "--strict-markers", timeout=120)


@pytest.fixture
def suite_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", _pythonpath())


def test_celery_function_fixtures_and_start_worker(pytester: pytest.Pytester,
                                                   project: Project, suite_env: None) -> None:
    result = _run(pytester, project, FUNCTION_SCOPED)
    result.assert_outcomes(passed=7)


def test_celery_session_fixtures(pytester: pytest.Pytester, project: Project,
                                 suite_env: None) -> None:
    result = _run(pytester, project, SESSION_SCOPED, session_tasks=SESSION_TASKS)
    result.assert_outcomes(passed=2)


def test_celery_app_trap(pytester: pytest.Pytester, project: Project,
                         suite_env: None) -> None:
    result = _run(pytester, project, TRAPPED)
    result.assert_outcomes(passed=3)


LOGGING = '''
import pytest

from liteq.utils.log import get_task_logger

logger = get_task_logger(__name__)


@pytest.fixture(scope="session")
def celery_enable_logging():
    return True


def test_logs(celery_app, celery_worker):
    @celery_app.task
    def shout():
        logger.error("shouted from the task")
        return "done"

    assert shout.delay().get(timeout=10) == "done"
'''


def test_celery_enable_logging(pytester: pytest.Pytester, suite_env: None) -> None:
    pytester.makepyfile(test_logging=LOGGING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", timeout=120)
    result.assert_outcomes(passed=1)
    result.stderr.re_match_lines([r".*ERROR.*test_logging\.shout\[[0-9a-f-]+\]: "
                                  r"shouted from the task$"])


def test_liteq_worker_sees_tasks_of_the_test_module(pytester: pytest.Pytester,
                                                    suite_env: None) -> None:
    """Issue 10 item 9: this failed with NotRegistered: task 'test_shop.add'."""
    pytester.makepyfile(test_shop='''
        from liteq import current_app


        def test_add(liteq_app, liteq_worker):
            @liteq_app.task
            def add(x, y):
                return x + y

            assert add.delay(2, 3).get(timeout=10) == 5
            assert current_app.main == liteq_app.main
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error",
                                           timeout=120)
    result.assert_outcomes(passed=1)
