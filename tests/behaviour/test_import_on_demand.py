"""A worker started without -A imports only the modules the user allowed: task modules
in its directory, ``-I``/``include`` and ``worker_import_allowlist``. A message naming
any other module fails as NotRegistered and runs nothing."""

from __future__ import annotations

import pytest

import liteq
from liteq.registry import ImportPolicy, defines_tasks
from tests.conftest import Project

#: A script beside the tasks: importing it would run its top-level code.
SCRIPT = '''
import pathlib
pathlib.Path(__file__).with_name("script-ran").write_text("ran")

def run():
    return "ran"
'''

#: A module of tasks without the usual decorator in its source text.
PLAIN = '''
from liteq import LiteQ

app = LiteQ(__name__, broker="@BROKER@")


def double(x):
    return 2 * x


double = getattr(app, "task")(double)  # no decorator in the text: not found by default
'''


def test_a_message_naming_a_script_runs_nothing(project: Project) -> None:
    tasks = project.module()
    (project.root / "cleanup.py").write_text(SCRIPT)
    project.worker()
    assert tasks.add.delay(2, 3).get(timeout=30) == 5  # task modules still load on demand
    res = tasks.app.send_task("cleanup.run")
    with pytest.raises(liteq.NotRegistered, match=r"cleanup\.run.*module 'cleanup' is not"):
        res.get(timeout=30)
    stdlib = tasks.app.send_task("antigravity.run")  # a standard module with side effects
    with pytest.raises(liteq.NotRegistered, match="antigravity"):
        stdlib.get(timeout=30)
    assert not (project.root / "script-ran").exists()


def test_include_allows_a_module(project: Project) -> None:
    module = project.module(PLAIN)
    first = project.worker()
    with pytest.raises(liteq.NotRegistered, match="worker_import_allowlist"):
        module.double.delay(21).get(timeout=30)
    first.stop()
    project.worker("-I", module.__name__)
    assert module.double.delay(21).get(timeout=30) == 42


def test_policy() -> None:
    default = ImportPolicy(None, include=["proj"], directory="/nonexistent")
    assert default.allows("proj.tasks") and default.allows("liteq")  # included; imported
    assert not default.allows("cleanup") and not default.allows("projector")
    explicit = ImportPolicy(["pkg"], directory=None)
    assert explicit.allows("pkg.sub.tasks") and not explicit.allows("other")
    assert ImportPolicy(["*"]).allows("anything")
    assert not defines_tasks("/nonexistent", "tasks")
