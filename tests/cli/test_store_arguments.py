"""Where a command finds its store, said loudly when it is wrong.

Read-only commands (and purge, revoke, retry) never create a store: a missing path,
a directory, a file that is not SQLite, or a SQLite file without liteq's tables is one
clear line on stderr, and the directory is left as it was. A positional argument that
is not a store (next to ``-A``, or a module name) is an error, not a new database file.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Project

APP = """
from liteq import LiteQ

app = LiteQ("proj", broker="sqlite:///proj.db")


@app.task
def add(x, y):
    return x + y
"""

#: (arguments before the database, arguments after it) of every command that must find
#: an existing store; ``events`` joins when it exists.
EXISTING_STORE_COMMANDS = {
    "result": (["result", "0190d2a4-0000-7000-8000-000000000001"], []),
    "inspect": (["inspect", "ping"], []),
    "queues": (["queues"], []),
    "status": (["status"], []),
    "purge": (["purge"], ["-f"]),
}


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime (to prove nothing changed)."""
    found = {}
    for path in root.rglob("*"):
        if "__pycache__" in path.parts:
            continue
        stat = path.stat()
        found[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return found


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def _commands() -> list[str]:
    from liteq.cli import cli

    return [name for name in EXISTING_STORE_COMMANDS if name in cli.commands] + \
        (["events"] if "events" in cli.commands else [])


@pytest.mark.parametrize("command", _commands())
@pytest.mark.parametrize("form", ["path", "url", "broker-option"])
def test_a_missing_store_is_an_error_and_nothing_is_created(project: Project, command: str,
                                                            form: str) -> None:
    before, after = EXISTING_STORE_COMMANDS.get(command, ([command], []))
    before_listing = _listing(project.root)
    if form == "path":
        done = project.liteq(*before, "typo.db", *after, timeout=30)
    elif form == "url":
        done = project.liteq(*before, "sqlite:///typo.db", *after, timeout=30)
    else:
        done = project.liteq("-b", "typo.db", *before, *after, timeout=30)
    assert done.returncode == 2, (done.stdout, done.stderr)
    line = _one_line(done.stderr)
    assert "typo.db" in line and "does not exist" in line, line
    assert _listing(project.root) == before_listing


@pytest.mark.parametrize("command", _commands())
def test_a_directory_is_not_a_store(project: Project, command: str) -> None:
    before, after = EXISTING_STORE_COMMANDS.get(command, ([command], []))
    (project.root / "stores").mkdir()
    before_listing = _listing(project.root)
    done = project.liteq(*before, "stores", *after, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "is a directory" in _one_line(done.stderr)
    assert _listing(project.root) == before_listing


@pytest.mark.parametrize("command", _commands())
def test_a_file_that_is_not_a_liteq_store_is_left_alone(project: Project,
                                                        command: str) -> None:
    before, after = EXISTING_STORE_COMMANDS.get(command, ([command], []))
    notes = project.root / "notes.db"
    notes.write_text("these are my notes, not a database\n" * 50)
    app_db = project.root / "app.db"
    with sqlite3.connect(app_db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    conn.close()
    before_listing = _listing(project.root)
    done = project.liteq(*before, "notes.db", *after, timeout=30)
    assert done.returncode == 1, done.stderr
    assert "notes.db is not a SQLite database" in _one_line(done.stderr)
    done = project.liteq(*before, "app.db", *after, timeout=30)
    assert done.returncode == 1, done.stderr
    line = _one_line(done.stderr)
    assert "app.db" in line and "not a liteq store" in line, line
    assert _listing(project.root) == before_listing


def test_the_apps_own_store_must_exist_too(project: Project) -> None:
    (project.root / "proj.py").write_text(APP)
    before_listing = _listing(project.root)
    for args in (["status"], ["queues"], ["inspect", "ping"], ["result", "some-id"]):
        done = project.liteq("-A", "proj", *args, timeout=30)
        assert done.returncode == 1, (args, done.stderr)
        line = _one_line(done.stderr)
        assert "proj.db" in line and "does not exist" in line, line
    assert _listing(project.root) == before_listing


def test_read_only_commands_work_on_an_existing_store(project: Project) -> None:
    tasks = project.module()
    res = tasks.add.delay(1, 2)
    done = project.liteq("queues", str(project.db))
    assert done.returncode == 0 and "celery" in done.stdout, done.stderr
    done = project.liteq("result", res.id, f"sqlite:///{project.db}")
    assert done.returncode == 0 and done.stdout.strip() == "PENDING", done.stderr


def test_writing_commands_still_create_the_store(project: Project) -> None:
    done = project.liteq("call", "proj.add", "new.db", "--args", "[1, 2]")
    assert done.returncode == 0, done.stderr
    assert (project.root / "new.db").exists()


def test_revoke_retry_and_beat_show_need_an_existing_store(project: Project) -> None:
    before_listing = _listing(project.root)
    done = project.liteq("beat", "typo.db", "--show")
    assert done.returncode == 2 and "does not exist" in _one_line(done.stderr)
    done = project.liteq("revoke", "some-id", "-b", "typo.db")
    assert done.returncode == 2 and "does not exist" in _one_line(done.stderr)
    done = project.liteq("retry", "some-id", "-b", "typo.db")
    assert done.returncode == 2 and "does not exist" in _one_line(done.stderr)
    assert _listing(project.root) == before_listing


def test_the_app_module_as_the_database_argument_is_an_error(project: Project) -> None:
    (project.root / "proj.py").write_text(APP)
    (project.root / "pkg").mkdir()
    (project.root / "pkg" / "__init__.py").write_text(APP)
    before_listing = _listing(project.root)
    done = project.liteq("-A", "proj", "worker", "proj", "-P", "solo", timeout=30)
    assert done.returncode == 2, (done.stdout, done.stderr)
    line = _one_line(done.stderr)
    assert "'proj'" in line and "module" in line and "-A" in line, line
    done = project.liteq("worker", "proj", "-P", "solo", timeout=30)
    assert done.returncode == 2, done.stderr
    line = _one_line(done.stderr)
    assert "'proj'" in line and "liteq -A proj worker" in line, line
    done = project.liteq("-A", "proj", "worker", "proj.py", "-P", "solo", timeout=30)
    assert done.returncode == 2, done.stderr
    assert "Python file" in _one_line(done.stderr)
    done = project.liteq("call", "pkg.add", "pkg", timeout=30)
    assert done.returncode == 2 and "module" in _one_line(done.stderr)
    assert _listing(project.root) == before_listing


def test_a_stray_name_next_to_the_app_is_an_error(project: Project) -> None:
    (project.root / "proj.py").write_text(APP)
    before_listing = _listing(project.root)
    done = project.liteq("-A", "proj", "worker", "prod", "-P", "solo", timeout=30)
    assert done.returncode == 2, (done.stdout, done.stderr)
    line = _one_line(done.stderr)
    assert "'prod'" in line and "not a database" in line, line
    assert _listing(project.root) == before_listing
    assert not os.path.exists(project.root / "prod")


def test_broker_urls_of_other_brokers_are_one_line(project: Project) -> None:
    before_listing = _listing(project.root)
    for url in ("amqp://guest@localhost//", "pyamqp://", "amqp", "amqp:", "sqs://"):
        done = project.liteq("worker", url, "-P", "solo", timeout=30)
        assert done.returncode == 1, (url, done.stderr)
        line = _one_line(done.stderr)
        assert line.startswith("Error: liteq has no"), line  # not a log line
        assert "sqlite:///" in line and "redis://" in line, line
    assert _listing(project.root) == before_listing
