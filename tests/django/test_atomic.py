"""``delay()`` inside ``transaction.atomic()``: atomic when Django's database and the
broker are one SQLite file (``django://default``), a warning when they are not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.django.conftest import HERE, DjangoProject, make_project

DEPTH = """
        def waiting():
            return sum(depth.total for depth in app.broker.depth().values())
"""


@pytest.fixture
def same_file_project(tmp_path: Path) -> Iterator[DjangoProject]:
    yield from make_project(tmp_path, HERE / "celery_layout",
                            {"TEST_BROKER_URL": "django://default"})


def test_a_task_sent_in_a_transaction_exists_iff_it_commits(
        same_file_project: DjangoProject) -> None:
    project = same_file_project
    out = project.shell("""
        from django.db import connection, transaction
        from demoapp.models import Widget
        from demoapp.tasks import rename_widget
        from proj.celery import app
        """ + DEPTH + """
        try:
            with transaction.atomic():
                lost = Widget.objects.create(name="lost")
                rename_widget.delay(lost.id, "never")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        print(Widget.objects.count(), waiting())

        with transaction.atomic():
            kept = Widget.objects.create(name="kept")
            result = rename_widget.delay(kept.id, "renamed")
            with connection.cursor() as cursor:  # in Django's transaction: there
                cursor.execute("SELECT count(*) FROM liteq_messages")
                print(cursor.fetchone()[0], waiting())  # liteq's own connection: not yet
        print(waiting())
        """)
    assert out.split() == ["0", "0", "1", "0", "1"]
    project.worker("-P", "solo")
    out = project.shell("""
        from demoapp.models import Widget
        from liteq.testing import wait_for
        wait_for(lambda: Widget.objects.filter(name="renamed").exists(), 20)
        print(Widget.objects.get().name)
        """)
    assert out.split() == ["renamed"]


def test_a_task_sent_with_autocommit_off_waits_for_the_commit(
        same_file_project: DjangoProject) -> None:
    out = same_file_project.shell("""
        from django.db import transaction
        from demoapp.tasks import add
        from proj.celery import app
        """ + DEPTH + """
        transaction.set_autocommit(False)
        add.delay(1, 1)
        transaction.rollback()
        add.delay(2, 2)
        print(waiting())
        transaction.commit()
        transaction.set_autocommit(True)
        print(waiting())
        """)
    assert out.split() == ["0", "1"]


def test_a_worker_sees_a_committed_task_at_once(same_file_project: DjangoProject) -> None:
    project = same_file_project
    project.worker("-P", "solo")
    out = project.shell("""
        import time
        from django.db import transaction
        from demoapp.models import Widget
        from demoapp.tasks import count_widgets
        with transaction.atomic():
            Widget.objects.create(name="a")
            result = count_widgets.delay()
        started = time.monotonic()
        print(result.get(timeout=20), time.monotonic() - started < 2)
        """)
    assert out.split() == ["1", "True"]


def test_a_savepoint_rollback_takes_its_task_back(same_file_project: DjangoProject) -> None:
    out = same_file_project.shell("""
        from django.db import transaction
        from demoapp.tasks import add
        from proj.celery import app
        """ + DEPTH + """
        with transaction.atomic():
            add.delay(1, 1)
            try:
                with transaction.atomic():
                    add.delay(2, 2)
                    raise RuntimeError("roll back the savepoint")
            except RuntimeError:
                pass
            add.delay(3, 3)
        print(waiting())
        """)
    assert out.split() == ["2"]


def test_the_broker_is_the_django_database_file(same_file_project: DjangoProject) -> None:
    out = same_file_project.shell("""
        from django.db import connection
        from proj.celery import app
        print(app.broker.location == str(connection.settings_dict["NAME"]))
        print(sorted(t for t in connection.introspection.table_names()
                     if t.startswith("liteq_"))[:1])
        """)
    assert out.split() == ["True", "['liteq_beat']"]


@pytest.mark.parametrize("broker_kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_another_store_warns_once_that_the_send_is_not_atomic(
        django_project: DjangoProject, broker_kind: str) -> None:
    out = django_project.shell("""
        import warnings
        from django.db import transaction
        from demoapp.tasks import add
        from proj.celery import app
        from liteq.contrib.django.transactions import NotAtomicWarning
        """ + DEPTH + """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                try:
                    with transaction.atomic():
                        add.delay(2, 2)
                        raise RuntimeError("roll back")
                except RuntimeError:
                    pass
            add.delay(3, 3)  # outside a transaction: no warning
        print(len(caught), caught[0].category is NotAtomicWarning, waiting())
        print(str(caught[0].message))
        """)
    lines = out.splitlines()
    assert lines[0].split() == ["1", "True", "3"]  # the rolled-back sends were not undone
    assert "delay_on_commit()" in lines[1] and "'default'" in lines[1]


@pytest.mark.parametrize(("url", "error"), [
    ("django://other", "django://other: no DATABASES entry 'other' in proj.settings"),
    ("django://pg", "django://pg: Django's database 'pg' is not a SQLite file"),
])
def test_a_django_database_that_is_not_a_sqlite_file_is_refused_as_broker(
        tmp_path: Path, url: str, error: str) -> None:
    for project in make_project(tmp_path, HERE / "celery_layout", {"TEST_BROKER_URL": url}):
        settings = project.root / "proj" / "settings.py"
        settings.write_text(settings.read_text() + (
            "\nDATABASES['pg'] = {'ENGINE': 'django.db.backends.postgresql', 'NAME': 'x'}\n"))
        done = project.manage("shell", "--no-imports", "-c",
                              "from demoapp.tasks import add; add.delay(1, 2)")
        assert done.returncode == 1
        assert error in done.stderr.strip().splitlines()[-1]
