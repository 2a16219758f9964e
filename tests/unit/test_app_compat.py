"""The app as Celery's: settings pending until first read (``on_after_configure``),
``task_cls`` by import path, ``gen_task_name``, ``liteq.uuid`` and the exception
classes tasks carry."""

from __future__ import annotations

import sys
import uuid as std_uuid
from pathlib import Path
from typing import Any

import pytest

import liteq
from liteq import LiteQ, MaxRetriesExceededError, OperationalError, Task
from liteq.config import PendingSettings, Settings
from liteq.exceptions import ImproperlyConfigured


def _app(tmp_path: Path, **settings: Any) -> LiteQ:
    return LiteQ("proj", broker=f"sqlite:///{tmp_path / 'q.db'}", set_as_current=False,
                 **settings)


def _recorder(app: LiteQ) -> list[str]:
    sent: list[str] = []
    app.on_configure.connect(lambda sender, **kw: sent.append("configure"), weak=False)
    app.on_after_configure.connect(lambda sender, **kw: sent.append("after"), weak=False)
    app.on_after_finalize.connect(lambda sender, **kw: sent.append("finalize"), weak=False)
    return sent


def test_the_first_read_configures_once_and_writes_do_not(tmp_path: Path) -> None:
    app = _app(tmp_path, result_extended=True)
    sent = _recorder(app)
    app.conf.task_default_queue = "work"  # writes keep the settings pending
    app.conf.update(result_expires=60)
    app.config_from_object({"task_acks_late": True})

    @app.task
    def ping() -> str:
        return "pong"

    assert sent == [] and not app.configured
    assert app.conf.task_default_queue == "work"  # the first read
    assert sent == ["configure", "after"] and app.configured
    assert type(app.conf) is Settings  # later reads are plain reads
    assert app.conf.result_extended is True and app.conf.task_acks_late is True
    app.finalize()
    app.finalize()
    assert sent == ["configure", "after", "finalize"]


def test_finalize_configures_when_nothing_read_the_settings(tmp_path: Path) -> None:
    app = _app(tmp_path)
    sent = _recorder(app)
    assert isinstance(app.conf, PendingSettings)
    app.finalize()
    assert sent == ["configure", "after", "finalize"]
    _ = app.conf.broker_url
    assert sent == ["configure", "after", "finalize"]


def test_handlers_see_tasks_defined_after_them(tmp_path: Path) -> None:
    app = _app(tmp_path)

    @app.on_after_configure.connect
    def setup(sender: LiteQ, **kwargs: Any) -> None:
        sender.add_periodic_task(10.0, hello.s("world"), name="hello")

    # add_periodic_task outside a handler does not configure either.
    app.add_periodic_task(5.0, app.tasks["liteq.accumulate"].s([1]), name="early")

    @app.task
    def hello(who: str) -> str:
        return f"hello {who}"

    assert not app.configured
    schedule = app.conf.beat_schedule
    assert set(schedule) == {"early", "hello"}
    assert schedule["hello"]["task"] == hello.name


def test_a_handler_that_reads_the_settings_does_not_recurse(tmp_path: Path) -> None:
    app = _app(tmp_path, timezone="UTC")
    seen: list[Any] = []
    app.on_after_configure.connect(
        lambda sender, **kw: seen.append(sender.conf.timezone), weak=False)
    assert app.conf.timezone == "UTC"
    assert seen == ["UTC"]


def test_task_cls_by_import_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "basetasks.py").write_text(
        "from liteq import Task\n\nclass Audited(Task):\n    audited = True\n\n"
        "NOT_A_TASK = object()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "basetasks", raising=False)
    app = _app(tmp_path, task_cls="basetasks:Audited")

    @app.task
    def audited() -> int:
        return 1

    assert getattr(audited, "audited", False) and isinstance(audited, Task)
    # liteq's own tasks keep liteq's Task.
    assert not hasattr(app.tasks["liteq.accumulate"], "audited")
    for path, words in (("basetasks:NOT_A_TASK", "subclass of liteq.Task"),
                        ("nowhere_module_xyz:Base", "cannot be imported")):
        bad = _app(tmp_path, task_cls=path)
        with pytest.raises(ImproperlyConfigured, match=words):
            bad.task(lambda: None)


def test_gen_task_name_names_decorated_and_registered_tasks(tmp_path: Path) -> None:
    class Prefixed(LiteQ):
        def gen_task_name(self, name: str, module: str) -> str:
            return f"p.{super().gen_task_name(name, module)}"

    app = Prefixed("proj", broker=f"sqlite:///{tmp_path / 'q.db'}", set_as_current=False)

    @app.task
    def one() -> int:
        return 1

    class Two(Task):
        def run(self) -> int:
            return 2

    two = app.register_task(Two)
    assert one.name == f"p.{__name__}.one"
    assert two.name == f"p.{__name__}.Two"
    assert app.tasks[one.name] is one


def test_tasks_carry_celerys_exception_classes(tmp_path: Path) -> None:
    app = _app(tmp_path)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    assert add.OperationalError is OperationalError
    assert add.MaxRetriesExceededError is MaxRetriesExceededError


def test_uuid_makes_task_ids() -> None:
    first, second = liteq.uuid(), liteq.uuid()
    assert isinstance(first, str) and first != second
    assert std_uuid.UUID(first).version == 7


def test_finalize_calls_handlers_of_modules_it_imports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker reads the settings before it imports ``include``: a handler in an
    included module (a common layout) still runs, once, when finalize imports it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "late_handlers", raising=False)
    (tmp_path / "late_handlers.py").write_text(
        "from liteq import current_app\n"
        "CALLS = []\n\n"
        "@current_app.on_after_configure.connect\n"
        "def setup(sender, **kwargs):\n"
        "    CALLS.append(sender)\n")
    app = _app(tmp_path, include=["late_handlers"])
    early: list[LiteQ] = []
    app.on_after_configure.connect(lambda sender, **kw: early.append(sender), weak=False)
    app.set_current()
    assert app.conf.include == ("late_handlers",)  # the worker reads its settings
    assert early == [app]
    app.finalize()
    app.finalize()
    module = sys.modules["late_handlers"]
    assert module.CALLS == [app] and early == [app]
