"""Celery's "First Steps with Celery" page, pasted with only the import and the URL changed.

docs/getting-started/first-steps-with-celery.rst (Celery 5.7): the ``tasks.py`` module,
``celery -A tasks worker --loglevel=INFO``, calling ``add.delay(4, 4)``, keeping results,
and the configuration section (``app.conf``, ``config_from_object('celeryconfig')``,
``task_routes``, ``task_annotations``, ``control rate_limit``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from liteq import AsyncResult, Celery
from tests.conformance.conftest import Page, PageFactory, write_files
from tests.conftest import Project

# The page's tasks.py, with the result backend line of "Keeping Results"
# (``backend='rpc://', broker='pyamqp://'``): only the URL differs.
FILES = {
    "tasks.py": """
        from liteq import Celery

        app = Celery('tasks', backend='rpc://', broker='@BROKER@')

        @app.task
        def add(x, y):
            return x + y
        """,
}


@pytest.fixture
def tasks_page(page: PageFactory) -> Page:
    # $ celery -A tasks worker --loglevel=INFO
    return page(FILES, "-A", "tasks", "--loglevel=INFO")


def test_calling_the_task_and_keeping_results(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    result = tasks.add.delay(4, 4)
    assert isinstance(result, AsyncResult), f"delay() returned {result!r}, not an AsyncResult"
    assert result.get(timeout=10) == 8, "result.get() of add(4, 4)"
    assert result.ready() is True
    assert result.result == 8, "result.result after get()"
    assert result.successful() is True


def test_get_propagates_the_exception_and_keeps_the_traceback(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    result = tasks.add.delay(2, "2")
    with pytest.raises(TypeError, match="unsupported operand"):
        result.get(timeout=10)
    # >>> result.get(propagate=False)
    returned = result.get(propagate=False, timeout=10)
    assert isinstance(returned, TypeError), f"get(propagate=False) gave {returned!r}"
    # >>> result.traceback
    assert result.traceback and "TypeError" in result.traceback, result.traceback
    assert result.successful() is False


def test_worker_log_shows_the_task(tasks_page: Page) -> None:
    tasks = tasks_page.module("tasks")
    result = tasks.add.delay(4, 4)
    assert result.get(timeout=10) == 8
    # "You can verify this by looking at the worker's console output."
    tasks_page.wait_for_output(f"tasks.add[{result.id}] succeeded")


def test_configuration_on_the_app(tmp_path: Path) -> None:
    """``app.conf.task_serializer = 'json'`` and ``app.conf.update(...)`` (no worker)."""
    app = Celery("tasks", broker=f"sqlite:///{tmp_path / 'tasks.db'}")
    app.conf.task_serializer = "json"
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # Ignore other content
        result_serializer="json",
        timezone="Europe/Oslo",
        enable_utc=True,
    )
    assert (app.conf.task_serializer, app.conf.accept_content, app.conf.result_serializer,
            app.conf.timezone, app.conf.enable_utc) == ("json", ["json"], "json",
                                                        "Europe/Oslo", True)


# The configuration module of the page (broker_url is the only change), with the
# routing and the annotation the page adds to it, and tasks.py loading it.
CONFIGURED = {
    "celeryconfig.py": """
        broker_url = '@BROKER@'
        result_backend = 'rpc://'

        task_serializer = 'json'
        result_serializer = 'json'
        accept_content = ['json']
        timezone = 'Europe/Oslo'
        enable_utc = True

        task_routes = {
            'tasks.add': 'low-priority',
        }

        task_annotations = {
            'tasks.add': {'rate_limit': '10/m'}
        }
        """,
    "tasks.py": """
        from liteq import Celery

        app = Celery('tasks')
        app.config_from_object('celeryconfig')

        @app.task
        def add(x, y):
            return x + y
        """,
}


def test_configuration_module_routes_and_rate_limits(project: Project) -> None:
    write_files(project, CONFIGURED)
    # $ python -m celeryconfig
    checked = project.run("import runpy; runpy.run_module('celeryconfig', run_name='__main__')")
    assert checked.returncode == 0, checked.stderr
    # The route sends tasks.add to 'low-priority': a worker on that queue runs it.
    project.worker("-A", "tasks", "-Q", "low-priority", database="")
    done = project.run("""
        from tasks import add
        result = add.delay(4, 4)
        print(result.get(timeout=10))
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "8", done.stdout
    # $ celery -A tasks control rate_limit tasks.add 10/m
    # worker@example.com: OK
    #     new rate limit set successfully
    control = project.liteq("-A", "tasks", "control", "rate_limit", "tasks.add", "10/m")
    assert control.returncode == 0, control.stderr
    assert "new rate limit set successfully" in control.stdout, control.stdout


def test_pending_is_unknown_and_result_backend_is_printable(tasks_page: Page) -> None:
    """Troubleshooting: "All tasks are PENDING by default"; ``print(result.backend)``."""
    tasks = tasks_page.module("tasks")
    result = tasks.app.AsyncResult("no-such-task-id")
    assert result.state == "PENDING"
    assert str(result.backend), "print(result.backend) shows nothing"
