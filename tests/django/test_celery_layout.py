"""Celery's ``examples/django`` layout, with only the import and the broker URL changed.

``proj/celery.py`` calls ``config_from_object("django.conf:settings",
namespace="CELERY")`` and ``autodiscover_tasks()`` at import, before Django is set up;
``demoapp/tasks.py`` holds ``shared_task``s that use a model.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from liteq.testing import wait_for
from tests.django.conftest import HERE, DjangoProject, make_project

WIDGETS = """
        from demoapp.models import Widget
        from demoapp.tasks import add, count_widgets, rename_widget
"""


def test_migrate_runs_and_the_worker_lists_the_shared_tasks(
        django_project: DjangoProject, broker_kind: str) -> None:
    # migrate ran in the fixture (it used to fail: AppRegistryNotReady)
    worker = django_project.worker("-l", "info", "-c", "1")
    banner = worker.output()
    for name in ("demoapp.tasks.add", "demoapp.tasks.count_widgets",
                 "demoapp.tasks.rename_widget", "proj.celery.debug_task"):
        assert name in banner
    out = django_project.shell(WIDGETS + """
        widget = Widget.objects.create(name="old")
        rename_widget.delay(widget.id, "new").get(timeout=20)
        widget.refresh_from_db()
        print(widget.name, count_widgets.delay().get(timeout=20), add.delay(2, 3).get(timeout=20))
        """)
    assert out.split() == ["new", "1", "5"]


def test_delay_on_commit_sends_at_commit_and_never_after_a_rollback(
        django_project: DjangoProject, broker_kind: str) -> None:
    django_project.worker("-P", "solo")
    out = django_project.shell(WIDGETS + """
        from django.db import transaction
        from proj.celery import app

        print(add.delay_on_commit(2, 3).get(timeout=20))  # no transaction: sent at once

        with transaction.atomic():
            result = add.apply_async_on_commit((4, 4), countdown=0)
            print(app.broker.depth().get("celery", None) is None
                  or app.broker.depth()["celery"].total == 0)
        print(result.get(timeout=20))

        try:
            with transaction.atomic():
                lost = add.delay_on_commit(1, 1)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        print(lost.state)
        """)
    assert out.split() == ["5", "True", "8", "PENDING"]


def test_shared_tasks_get_the_django_task_class(django_project: DjangoProject) -> None:
    out = django_project.shell("""
        from demoapp.tasks import add
        from proj.celery import app, debug_task
        from liteq.contrib.django.task import DjangoTask
        print(isinstance(add, DjangoTask), isinstance(debug_task, DjangoTask),
              app.task_cls is DjangoTask)
        """)
    assert out.split() == ["True", "True", "True"]


def test_autodiscovery_waits_for_django(django_project: DjangoProject) -> None:
    # Importing the app before Django is set up imports no task module; discovery runs
    # when the registry is ready (here: the first request Django serves) or a worker
    # starts.
    code = """
        import os, sys
        os.environ["DJANGO_SETTINGS_MODULE"] = "proj.settings"
        import proj
        print("demoapp.tasks" in sys.modules, len(proj.celery_app.pending_discovery))
        import django
        django.setup()
        from django.test import Client
        Client().get("/")
        print("demoapp.tasks" in sys.modules, "demoapp.tasks.add" in proj.celery_app.tasks)
    """
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                         cwd=django_project.root, capture_output=True, text=True,
                         env=django_project.env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "1", "True", "True"]


# -- database connections in workers ---------------------------------------------------

CONNECTION_TASKS = """

from django.db import connection
from liteq import shared_task


@shared_task
def connection_state():
    # Is a connection open as the task starts, and which one (after a query)?
    open_at_start = connection.connection is not None
    Widget.objects.count()
    return [open_at_start, id(connection.connection)]
"""


@pytest.mark.parametrize("pool", ["solo", "threads", "prefork", "prefork spawn"])
def test_stale_connections_are_closed_around_each_task(django_project: DjangoProject,
                                                       pool: str) -> None:
    tasks = django_project.root / "demoapp" / "tasks.py"
    tasks.write_text(tasks.read_text() + CONNECTION_TASKS)
    kind, _, start_method = pool.partition(" ")
    # a spawned child sets Django up itself (django.setup() when the app is finalized)
    django_project.worker("-P", kind, "-c", "1",
                          *(["--start-method", start_method] if start_method else []))
    out = django_project.shell("""
        from demoapp.tasks import connection_state
        first = connection_state.delay().get(timeout=20)
        second = connection_state.delay().get(timeout=20)
        print(first[0], second[0])
        """)
    # CONN_MAX_AGE = 0 (Django's default): closed after each task, as after a request
    assert out.split() == ["False", "False"]


def test_persistent_connections_are_kept_and_never_shared_across_fork(
        django_project: DjangoProject) -> None:
    tasks = django_project.root / "demoapp" / "tasks.py"
    tasks.write_text(tasks.read_text() + CONNECTION_TASKS)
    settings = django_project.root / "proj" / "settings.py"
    settings.write_text(settings.read_text() + "\nDATABASES['default']['CONN_MAX_AGE'] = None\n")
    celery = django_project.root / "proj" / "celery.py"
    celery.write_text(celery.read_text() + """

@app.on_after_finalize.connect
def touch_the_database(sender, **kwargs):
    # the worker's main process opens a connection before it forks its pool
    from demoapp.models import Widget
    Widget.objects.count()
""")
    django_project.worker("-P", "prefork", "-c", "1")
    out = django_project.shell("""
        from demoapp.tasks import connection_state
        first = connection_state.delay().get(timeout=20)
        second = connection_state.delay().get(timeout=20)
        print(first[0], second[0], first[1] == second[1])
        """)
    # the child starts without the parent's connection, then keeps its own
    assert out.split() == ["False", "True", "True"]


def test_inspect_registered_lists_the_shared_tasks(django_project: DjangoProject) -> None:
    settings = django_project.root / "proj" / "settings.py"
    settings.write_text(settings.read_text() + "\nCELERY_WORKER_HEARTBEAT_INTERVAL = 0.2\n")
    django_project.worker("-P", "solo")

    def registered() -> str:
        done = django_project.liteq("-A", "proj", "inspect", "registered")
        return done.stdout if "demoapp.tasks.add" in done.stdout else ""

    listed = wait_for(registered, 15)
    for name in ("demoapp.tasks.count_widgets", "demoapp.tasks.rename_widget",
                 "proj.celery.debug_task"):
        assert name in listed


@pytest.mark.parametrize("backend", ["django-db", "django-cache"])
def test_django_result_backends_use_the_store_with_one_warning(
        tmp_path: Path, broker_url: str, backend: str) -> None:
    for project in make_project(tmp_path, HERE / "celery_layout",
                                {"TEST_BROKER_URL": broker_url, "TEST_RESULT_BACKEND": backend}):
        worker = project.worker("-P", "solo")
        done = project.manage("shell", "--no-imports", "-c", textwrap.dedent("""
            from demoapp.tasks import add
            result = add.delay(2, 3)
            print(result.get(timeout=20))
            """))
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["5"]
        warned = [line for line in done.stderr.splitlines() if backend in line]
        assert len(warned) == 1 and "liteq" in warned[0]
        assert backend in worker.output()
        assert not (project.root / backend).exists()


def test_every_app_of_a_django_process_gets_the_fix_up(django_project: DjangoProject) -> None:
    out = django_project.shell("""
        from liteq import Celery
        from liteq.contrib.django.task import DjangoTask
        from proj.celery import app
        other = Celery("other", broker="sqlite:///other.db")
        print(len(app.fixups), len(other.fixups), other.task_cls is DjangoTask)
        """)
    assert out.split() == ["1", "1", "True"]


@pytest.mark.parametrize(("broken", "error"), [
    ("proj/settings.py", "Error: Django could not be set up (proj.settings): "
                         "ModuleNotFoundError: No module named 'no_such_app'"),
    ("demoapp/tasks.py", "Error: autodiscover_tasks() failed: RuntimeError: broken tasks"),
])
def test_a_broken_project_stops_the_worker_with_one_line(
        django_project: DjangoProject, broken: str, error: str) -> None:
    path = django_project.root / broken
    line = "INSTALLED_APPS.append('no_such_app')" if broken.endswith("settings.py") \
        else "raise RuntimeError('broken tasks')"
    path.write_text(path.read_text() + "\n" + line + "\n")
    done = django_project.liteq("-A", "proj", "worker", "-P", "solo")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == error
    assert "Traceback" not in done.stderr
