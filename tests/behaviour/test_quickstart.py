"""The issue's promise: a new user writes tasks.py, starts `liteq worker tasks.db`, sees 8."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Project

QUICKSTART = """
from liteq import LiteQ
app = LiteQ("tasks", broker="sqlite:///tasks.db")

@app.task
def add(x, y):
    return x + y
"""


@pytest.mark.sqlite_only("the quickstart: a worker on a database file")
def test_worker_on_a_path_imports_the_task_module_on_first_use(project: Project) -> None:
    # Given the quickstart's tasks.py (a relative database path, module named "tasks")
    (project.root / "tasks.py").write_text(QUICKSTART)
    # When a worker starts with only the database path, and a script sends add(4, 4)
    worker = project.worker(database="tasks.db", pool="prefork")
    done = project.run("from tasks import add; print(add.delay(4, 4).get(timeout=10))")
    # Then the script prints 8
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "8"
    assert "tasks.add" in worker.output()


@pytest.mark.sqlite_only("file modes of the SQLite database")
def test_database_and_sidecar_files_are_private(project: Project) -> None:
    (project.root / "tasks.py").write_text(QUICKSTART)
    project.worker(database="tasks.db")
    done = project.run("from tasks import add; print(add.delay(1, 2).get(timeout=10))")
    assert done.stdout.strip() == "3", done.stderr
    for name in ("tasks.db", "tasks.db-wal", "tasks.db-shm"):
        path = Path(project.root / name)
        assert path.exists(), name
        assert path.stat().st_mode & 0o777 == 0o600, name
