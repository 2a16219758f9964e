"""``liteq.contrib.django.tasks.LiteQBackend`` against the documented behaviour of
Django's tasks framework (``django.tasks``; the ``django-tasks`` backport on Django < 6),
with real workers started by ``python manage.py liteq worker``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.django.conftest import HERE, DjangoProject, make_project

IMPORTS = """
        from jobs import tasks
        from liteq.contrib.django.tasks import (
            TaskResultStatus, TaskResultDoesNotExist, task_backends)
        from liteq.testing import wait_for

        def finished(result, timeout=20):
            wait_for(lambda: result.refresh() or result.is_finished, timeout)
            return result
"""


@pytest.fixture
def tasks_project(tmp_path: Path, broker_url: str) -> Iterator[DjangoProject]:
    url = "django://default" if broker_url.startswith("sqlite") else broker_url
    yield from make_project(tmp_path, HERE / "tasks_project", {"TEST_BROKER_URL": url})


def manage_worker(project: DjangoProject, *args: str) -> None:
    project.worker(*args, command=[sys.executable, "manage.py", "liteq", "worker"])


def test_enqueue_run_and_read_back_the_result(tasks_project: DjangoProject,
                                              broker_kind: str) -> None:
    out = tasks_project.shell(IMPORTS + """
        result = tasks.add.enqueue(2, 3)
        again = tasks.add.get_result(result.id)
        print(result.status, again.status, again.args, again.attempts, again.started_at)
        print(result.enqueued_at is not None, again.enqueued_at == result.enqueued_at)
        print(result.id)
        """)
    lines = out.splitlines()
    assert lines[0].split() == ["READY", "READY", "[2,", "3]", "0", "None"]
    assert lines[1].split() == ["True", "True"]
    result_id = lines[2]
    manage_worker(tasks_project, "-P", "solo")
    out = tasks_project.shell(IMPORTS + f"""
        result = finished(tasks.add.get_result({result_id!r}))
        print(result.status, result.return_value, result.attempts, len(result.worker_ids))
        print(result.enqueued_at <= result.started_at <= result.finished_at,
              result.last_attempted_at == result.started_at, result.errors,
              result.task.func is tasks.add.func, result.backend)
        value = finished(tasks.tuple_value.enqueue())
        print(value.return_value)
        """)
    lines = out.splitlines()
    assert lines[0].split() == ["SUCCESSFUL", "5", "1", "1"]
    assert lines[1].split() == ["True", "True", "[]", "True", "default"]
    assert lines[2] == "[1, 2]"  # JSON-normalized, as the framework's backends do


def test_a_failing_task_is_failed_with_its_error(tasks_project: DjangoProject,
                                                 broker_kind: str) -> None:
    manage_worker(tasks_project, "-P", "solo")
    out = tasks_project.shell(IMPORTS + """
        result = finished(tasks.fail.enqueue("boom"))
        error = result.errors[0]
        print(result.status, len(result.errors), error.exception_class.__name__,
              error.exception_class_path, "boom" in error.traceback, result.attempts)
        try:
            result.return_value
        except ValueError as exc:
            print(exc)
        """)
    lines = out.splitlines()
    assert lines[0].split() == ["FAILED", "1", "ValueError", "builtins.ValueError", "True",
                                "1"]
    assert lines[1] == "Task failed"


def test_context_async_functions_and_aenqueue(tasks_project: DjangoProject,
                                              broker_kind: str) -> None:
    manage_worker(tasks_project, "-P", "solo")
    out = tasks_project.shell(IMPORTS + """
        import asyncio
        result = finished(tasks.whoami.enqueue("x"))
        value = result.return_value
        print(value["id"] == result.id, value["attempt"], value["tag"], value["status"])

        async def send():
            sent = await tasks.slow_double.aenqueue(21)
            return sent.id
        result_id = asyncio.run(send())
        result = finished(tasks.slow_double.get_result(result_id))
        again = asyncio.run(tasks.slow_double.aget_result(result_id))
        print(result.return_value, again.status)
        """)
    lines = out.splitlines()
    assert lines[0].split() == ["True", "1", "x", "RUNNING"]
    assert lines[1].split() == ["42", "SUCCESSFUL"]


def test_priority_run_after_and_queues(tasks_project: DjangoProject, broker_kind: str,
                                       tmp_path: Path) -> None:
    log = tmp_path / "order.txt"
    out = tasks_project.shell(IMPORTS + f"""
        from datetime import timedelta
        from django.utils import timezone
        path = {str(log)!r}
        later = tasks.record.using(run_after=timezone.now() + timedelta(seconds=2))
        deferred = later.enqueue(path, "deferred")
        tasks.record.using(priority=-5).enqueue(path, "low")
        tasks.record.enqueue(path, "high")  # priority=10 from the decorator
        tasks.record.using(priority=50).enqueue(path, "highest")
        report = tasks.report.enqueue()
        print(deferred.id, report.id, deferred.task.run_after is not None)
        """)
    deferred_id, report_id, has_run_after = out.split()
    assert has_run_after == "True"
    manage_worker(tasks_project, "-P", "solo", "-c", "1", "--prefetch-multiplier", "1")
    out = tasks_project.shell(IMPORTS + f"""
        deferred = finished(tasks.record.get_result({deferred_id!r}))
        print(deferred.started_at >= deferred.task.run_after)
        print(tasks.report.get_result({report_id!r}).status)  # no worker on "reports" yet
        """)
    assert out.split() == ["True", "READY"]
    order = log.read_text().split()
    # priority orders the three ready tasks; the deferred one runs once its time has come,
    # which on a loaded machine may be before "low" (its start time is checked above)
    assert sorted(order) == ["deferred", "high", "highest", "low"]
    assert [name for name in order if name != "deferred"] == ["highest", "high", "low"]
    manage_worker(tasks_project, "-P", "solo", "-Q", "reports")
    out = tasks_project.shell(IMPORTS + f"""
        print(finished(tasks.report.get_result({report_id!r})).return_value)
        """)
    assert out.split() == ["reported"]


def test_unknown_ids_mismatches_and_capabilities(tasks_project: DjangoProject) -> None:
    out = tasks_project.shell(IMPORTS + """
        from liteq.contrib.django.tasks import LiteQBackend, _framework_name
        backend = task_backends["default"]
        print(type(backend) is LiteQBackend, backend.supports_defer,
              backend.supports_async_task, backend.supports_get_result,
              backend.supports_priority)
        try:
            tasks.add.get_result("no-such-id")
        except TaskResultDoesNotExist:
            print("missing")
        result = tasks.add.enqueue(1, 1)
        try:
            tasks.fail.get_result(result.id)
        except _framework_name("TaskResultMismatch"):
            print("mismatch")
        try:
            tasks.add.using(queue_name="nope")  # not in the backend's QUEUES
        except Exception as exc:
            print(type(exc).__name__.replace("InvalidTaskError", "InvalidTask"))
        try:
            tasks.add.enqueue(object())
        except TypeError:
            print("not json")
        """)
    assert out.split() == ["True", "True", "True", "True", "True", "missing", "mismatch",
                           "InvalidTask", "not", "json"]


def test_migrate_creates_liteq_tables_in_the_django_database(
        tasks_project: DjangoProject) -> None:
    # migrate ran in the fixture; no liteq app was used before
    out = tasks_project.shell("""
        from django.db import connection
        print("liteq_messages" in connection.introspection.table_names())
        """)
    assert out.split() == ["True"]


def test_enqueue_in_a_rolled_back_transaction_leaves_nothing(
        tasks_project: DjangoProject) -> None:
    out = tasks_project.shell(IMPORTS + """
        from django.db import transaction
        try:
            with transaction.atomic():
                lost = tasks.add.enqueue(1, 2)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        try:
            tasks.add.get_result(lost.id)
        except TaskResultDoesNotExist:
            print("gone")
        with transaction.atomic():
            kept = tasks.add.enqueue(2, 2)
        print(tasks.add.get_result(kept.id).status)
        """)
    assert out.split() == ["gone", "READY"]
