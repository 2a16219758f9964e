"""Celery's "Testing with Celery" page, with only the import and the broker URL changed.

docs/userguide/testing.rst (Celery 5.7): a unit test with mocks, the pytest plugin's
fixtures (``celery_app``, ``celery_worker``, ``celery_config``, ``celery_includes``,
``celery_session_app``, ``celery_session_worker``), the ``celery`` mark, and
``start_worker`` (celery.contrib.testing.worker). Each suite runs in its own pytest
process, in a project of its own, as the user's suite would. Celery asks for
``pytest_plugins = ("celery.contrib.pytest", )``; liteq's plugin loads itself through
its entry point, so the suites below have no such line.

Also eager mode (``task_always_eager``), which the page warns about: it must run the
whole canvas in process and never touch the broker (issue 10, item 2).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from liteq import Celery, chain, chord, group
from tests.conformance.conftest import write_files
from tests.conftest import Project, _pythonpath


def run_suite(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    """``pytest`` in the project, as the user runs their suite."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *args], cwd=project.root, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": _pythonpath()})


def assert_passed(done: subprocess.CompletedProcess[str], count: int) -> None:
    assert done.returncode == 0 and f"{count} passed" in done.stdout, (
        f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")


def test_unit_test_with_mocks(project: Project) -> None:
    write_files(project, {
        # Celery's own suites collect ``class test_*``; the page's test class is one.
        "pytest.ini": """
            [pytest]
            python_classes = test_*
            """,
        "proj/__init__.py": "",
        "proj/celery.py": """
            from liteq import Celery

            app = Celery('proj', broker='@BROKER@')
            """,
        # A stand-in for the page's Django model.
        "proj/models.py": """
            class OperationalError(Exception):
                pass


            class _Objects:
                rows = {}

                def create(self, name):
                    product = Product(len(self.rows) + 1, name)
                    self.rows[product.pk] = product
                    return product

                def get(self, pk):
                    return self.rows[pk]


            class Product:
                objects = _Objects()

                def __init__(self, pk, name):
                    self.pk, self.name = pk, name

                def order(self, quantity, price):
                    return quantity * price
            """,
        "proj/tasks.py": """
            from decimal import Decimal

            from .celery import app
            from .models import OperationalError, Product


            @app.task(bind=True)
            def send_order(self, product_pk, quantity, price):
                price = Decimal(price)  # json serializes this to string.

                # models are passed by id, not serialized.
                product = Product.objects.get(product_pk)

                try:
                    product.order(quantity, price)
                except OperationalError as exc:
                    raise self.retry(exc=exc)
            """,
        "test_send_order.py": """
            from decimal import Decimal

            from pytest import raises

            from liteq.exceptions import Retry

            # for python 2: use mock.patch from `pip install mock`.
            from unittest.mock import patch

            from proj.models import OperationalError, Product
            from proj.tasks import send_order

            class test_send_order:

                @patch('proj.tasks.Product.order')  # < patching Product in module above
                def test_success(self, product_order):
                    product = Product.objects.create(
                        name='Foo',
                    )
                    send_order(product.pk, 3, Decimal(30.3))
                    product_order.assert_called_with(3, Decimal(30.3))

                @patch('proj.tasks.Product.order')
                @patch('proj.tasks.send_order.retry')
                def test_failure(self, send_order_retry, product_order):
                    product = Product.objects.create(
                        name='Foo',
                    )

                    # Set a side effect on the patched methods
                    # so that they raise the errors we want.
                    send_order_retry.side_effect = Retry()
                    product_order.side_effect = OperationalError()

                    with raises(Retry):
                        send_order(product.pk, 3, Decimal(30.6))
            """,
    })
    assert_passed(run_suite(project), 2)


def test_celery_app_and_celery_worker(project: Project) -> None:
    write_files(project, {
        "test_create_task.py": """
            def test_create_task(celery_app, celery_worker):
                @celery_app.task
                def mul(x, y):
                    return x * y

                celery_worker.reload()
                assert mul.delay(4, 4).get(timeout=10) == 16
            """,
    })
    assert_passed(run_suite(project), 1)


def test_celery_config_includes_and_the_session_worker(project: Project) -> None:
    write_files(project, {
        "proj/__init__.py": "",
        "proj/tests/__init__.py": "",
        "proj/tests/tasks.py": """
            from liteq import shared_task

            @shared_task
            def add(x, y):
                return x + y
            """,
        "conftest.py": """
            import pytest

            @pytest.fixture(scope='session')
            def celery_config():
                return {
                    'broker_url': '@BROKER@',
                    'result_backend': 'rpc',
                }

            @pytest.fixture(scope='session')
            def celery_includes():
                return [
                    'proj.tests.tasks',
                ]
            """,
        "test_session.py": """
            from proj.tests.tasks import add

            # Do this in your tests.
            def test_add_task(celery_session_worker):
                assert add.delay(2, 2).get(timeout=10) == 4

            def test_session_app(celery_session_app):
                assert celery_session_app.conf.broker_url == '@BROKER@'
            """,
    })
    assert_passed(run_suite(project), 2)


def test_the_celery_mark_sets_the_test_apps_configuration(project: Project) -> None:
    write_files(project, {
        "test_mark.py": """
            import pytest

            @pytest.mark.celery(result_backend='@BROKER@')
            def test_something(celery_app):
                assert celery_app.conf.result_backend == '@BROKER@'

            @pytest.mark.celery(result_backend='@BROKER@')
            class test_something_else:

                def test_one(self, celery_app):
                    assert celery_app.conf.result_backend == '@BROKER@'
            """,
        "pytest.ini": """
            [pytest]
            python_classes = test_*
            """,
    })
    assert_passed(run_suite(project), 2)


def test_start_worker_context_manager(project: Project) -> None:
    write_files(project, {
        "tasks.py": """
            from liteq import Celery

            app = Celery('tasks', broker='@BROKER@')

            @app.task
            def add(x, y):
                return x + y
            """,
    })
    done = project.run("""
        from liteq.contrib.testing.worker import start_worker
        from tasks import add, app

        with start_worker(app, perform_ping_check=False):
            print(add.delay(2, 2).get(timeout=10))
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4"], done.stdout


# -- eager mode ------------------------------------------------------------------------

@pytest.fixture
def eager(tmp_path: Path) -> Iterator[Celery]:
    """An app in eager mode whose store must never be opened (nor created)."""
    app = Celery("eager", broker=f"sqlite:///{tmp_path / 'never.db'}")
    app.conf.task_always_eager = True
    yield app
    app.close()


def test_eager_mode_runs_the_canvas_in_process(eager: Celery, tmp_path: Path) -> None:
    @eager.task
    def add(x, y):  # type: ignore[no-untyped-def]
        return x + y

    @eager.task
    def mul(x, y):  # type: ignore[no-untyped-def]
        return x * y

    @eager.task
    def tsum(numbers):  # type: ignore[no-untyped-def]
        return sum(numbers)

    assert add.delay(2, 2).get() == 4
    assert chain(add.s(4, 4) | mul.s(8))().get(timeout=5) == 64
    assert (add.s(4, 4) | mul.s(8))().get(timeout=5) == 64
    res = (add.si(2, 2) | add.si(4, 4) | add.si(8, 8))()
    assert (res.get(timeout=5), res.parent.get(timeout=5)) == (16, 8)
    assert group(add.s(i, i) for i in range(10))().get(timeout=5) == [
        0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert chord((add.s(i, i) for i in range(10)), tsum.s())().get(timeout=5) == 90
    assert (group(add.s(i, i) for i in range(10)) | tsum.s())().get(timeout=5) == 90
    assert not (tmp_path / "never.db").exists(), "eager mode opened the broker's store"


def test_eager_mode_runs_links_and_errbacks_in_process(eager: Celery, tmp_path: Path) -> None:
    seen: list[object] = []

    @eager.task
    def add(x, y):  # type: ignore[no-untyped-def]
        return x + y

    @eager.task
    def remember(value):  # type: ignore[no-untyped-def]
        seen.append(value)

    @eager.task
    def error_handler(request, exc, traceback):  # type: ignore[no-untyped-def]
        seen.append((request.id, repr(exc)))

    add.apply_async((2, 2), link=remember.s())
    failed = add.apply_async((2, "2"), link_error=error_handler.s())
    assert seen == [4, (failed.id, repr(failed.result))], seen
    assert isinstance(failed.result, TypeError)
    assert not (tmp_path / "never.db").exists(), "eager mode opened the broker's store"


def test_eager_results_are_stored_only_when_asked(tmp_path: Path) -> None:
    """"eagerly executed tasks don't write results to backend by default"; with
    ``task_store_eager_result`` they do."""
    url = f"sqlite:///{tmp_path / 'results.db'}"
    app = Celery("eager", broker=url)
    app.conf.task_always_eager = True
    app.conf.task_store_eager_result = True

    @app.task
    def add(x, y):  # type: ignore[no-untyped-def]
        return x + y

    res = add.delay(2, 2)
    reader = Celery("reader", broker=url)
    try:
        assert reader.AsyncResult(res.id).get(timeout=5) == 4
    finally:
        reader.close()
        app.close()
