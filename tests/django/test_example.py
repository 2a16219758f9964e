"""``examples/django`` end to end: migrate, ``manage.py liteq worker -B``, the view
that sends with ``delay_on_commit``, the periodic sweep, and ``manage.py liteq``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.django.conftest import WORKTREE, DjangoProject, make_project

EXAMPLE = WORKTREE / "examples" / "django"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[DjangoProject]:
    yield from make_project(tmp_path, EXAMPLE, {"SHOP_SWEEP_SECONDS": "0.5"})


def test_the_example_shop_end_to_end(shop: DjangoProject) -> None:
    worker = shop.worker("-B", "-c", "2",
                         command=[sys.executable, "manage.py", "liteq", "worker"])
    assert "django://default" not in worker.output()  # the banner names the real file
    assert str(shop.root / "db.sqlite3") in worker.output()
    out = shop.shell("""
        import json
        from django.test import Client
        from liteq.testing import wait_for
        from orders.models import Order

        client = Client()
        created = client.post("/orders/", json.dumps({"item": "book", "quantity": 2}),
                              content_type="application/json")
        body = created.json()
        print(created.status_code)
        order = Order.objects.get(id=body["id"])
        wait_for(lambda: Order.objects.get(id=order.id).status == "fulfilled", 20)
        order.refresh_from_db()
        print(order.fulfilled_by == body["task_id"], client.get(f"/orders/{order.id}/").json())

        # an order nobody sent a task for: the periodic sweep fulfils it
        forgotten = Order.objects.create(item="pen")
        wait_for(lambda: Order.objects.get(id=forgotten.id).status == "fulfilled", 20)
        print("swept")
        print(client.post("/orders/", "{}", content_type="application/json").status_code)
        """)
    lines = out.splitlines()
    assert lines[0] == "201"
    assert lines[1] == "True {'id': 1, 'item': 'book', 'status': 'fulfilled'}"
    assert lines[2:] == ["swept", "400"]


def test_manage_py_liteq_forwards_to_the_command_line(shop: DjangoProject) -> None:
    shop.worker("-P", "solo", command=[sys.executable, "manage.py", "liteq", "worker"])
    status = shop.manage("liteq", "status", "--settings=shop.settings")
    assert status.returncode == 0, status.stderr
    assert "1 node" in status.stdout
    out = shop.shell("""
        from django.core.management import call_command
        call_command("liteq", "status")
        """)
    assert "1 node" in out
    called = shop.manage("liteq", "call", "orders.tasks.fulfil_waiting_orders", "--wait")
    assert called.returncode == 0, called.stderr
    assert called.stdout.strip().splitlines()[-1] == "0"
    helped = shop.manage("liteq", "--help")
    assert helped.returncode == 0 and "worker" in helped.stdout
    bad = shop.manage("liteq", "no-such-command")
    assert bad.returncode == 2 and "no-such-command" in bad.stderr


def test_manage_py_liteq_without_an_app_says_what_to_do(tmp_path: Path) -> None:
    for project in make_project(tmp_path, EXAMPLE, {}):
        (project.root / "shop" / "celery.py").unlink()
        (project.root / "shop" / "__init__.py").write_text("")
        done = project.manage("liteq", "status")
        assert done.returncode == 1
        assert done.stderr.startswith("CommandError: no liteq app found: set LITEQ_APP")
        assert "Traceback" not in done.stderr
        settings = project.root / "shop" / "settings.py"
        settings.write_text(settings.read_text() + "\nLITEQ_APP = 'elsewhere:app'\n")
        done = project.manage("liteq", "status")
        assert done.returncode == 1 and "elsewhere" in done.stderr
        assert "Traceback" not in done.stderr
