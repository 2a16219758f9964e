"""The command line: help, usage errors, -A forms, signals, admin commands."""

from __future__ import annotations

import signal
import socket

import click
import pytest
from click.testing import CliRunner

from liteq.cli import cli
from tests.conftest import Project

COMMANDS = sorted(cli.commands)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name: str) -> None:
    command = cli.commands[name]
    assert command.help, f"{name} has no help"
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_usage_errors_exit_2_with_one_line(project: Project) -> None:
    done = project.liteq("worker")
    assert done.returncode == 2
    assert "give the database" in done.stderr
    done = project.liteq("worker", "x.db", "--concurrency", "zero")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    done = project.liteq("worker", "x.db", "-l", "loud")
    assert done.returncode == 2 and "'loud' is not one of" in done.stderr
    done = project.liteq("nosuch")
    assert done.returncode == 2


def test_app_errors_are_one_line_exit_1(project: Project) -> None:
    done = project.liteq("-A", "does_not_exist", "worker")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "does_not_exist" in done.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_app_option_before_or_after_the_command(project: Project, where: str) -> None:
    tasks = project.module()
    if where == "before":
        worker = project.worker(database="", global_args=("-A", tasks.__name__), loglevel="INFO")
    else:
        worker = project.worker("-A", tasks.__name__, database="", loglevel="INFO")
    assert tasks.add.delay(2, 2).get(timeout=10) == 4
    assert f"{tasks.__name__}.add" in worker.output()  # the banner lists -A's tasks


def test_sigint_is_a_warm_shutdown_and_a_second_is_cold(project: Project) -> None:
    tasks = project.module()
    worker = project.worker()
    worker.signal(signal.SIGINT)
    worker.process.wait(20)
    assert worker.returncode == 0
    assert "Warm shutdown" in worker.output() and "shutdown complete (warm)" in worker.output()
    # Cold: a running task is interrupted; without acks_late it ends as FAILURE.
    worker = project.worker()
    res = tasks.sleep.delay(30)
    from liteq.testing import wait_for

    wait_for(lambda: res.state == "RECEIVED", 10)
    worker.signal(signal.SIGINT)
    worker.wait_for_output("Warm shutdown")  # signals sent back to back would coalesce
    worker.signal(signal.SIGINT)
    worker.process.wait(20)
    assert worker.returncode == 1
    assert "Cold shutdown" in worker.output()
    with pytest.raises(Exception, match="Worker exited prematurely"):
        res.get(timeout=10)


def test_node_name_expansion_and_status(project: Project) -> None:
    project.module()
    project.worker("-n", "w1@%h")
    done = project.liteq("status", str(project.db))
    assert done.returncode == 0, done.stderr
    assert f"w1@{socket.gethostname()}" in done.stdout
    assert "1 node online." in done.stdout


def test_status_without_workers_exits_1(project: Project) -> None:
    project.module().app.broker.open()
    done = project.liteq("status", str(project.db))
    assert done.returncode == 1 and "0 nodes online." in done.stdout


def test_call_result_queues_and_purge(project: Project) -> None:
    tasks = project.module()
    name = f"{tasks.__name__}.add"
    done = project.liteq("call", name, str(project.db), "--args", "[2, 3]")
    task_id = done.stdout.strip()
    assert done.returncode == 0 and len(task_id) == 36
    tasks.add.apply_async((1, 1), countdown=60, queue="later")
    done = project.liteq("queues", str(project.db))
    assert "celery" in done.stdout and "later" in done.stdout
    done = project.liteq("purge", str(project.db), "-Q", "later", "-f")
    assert "Purged 1 message" in done.stdout
    project.worker()
    done = project.liteq("call", name, str(project.db), "--args", "[2, 3]", "--wait",
                         "--timeout", "10")
    assert done.stdout.strip() == "5"
    done = project.liteq("result", task_id, str(project.db))
    assert done.returncode == 0 and done.stdout.strip() == "SUCCESS: 5"
    done = project.liteq("call", f"{tasks.__name__}.fail", str(project.db), "--args",
                         '["bad"]', "--wait", "--timeout", "10")
    assert done.returncode == 1 and "ValueError('bad')" in done.stderr
    done = project.liteq("call", name, str(project.db), "--args", "{oops")
    assert done.returncode == 2 and "--args must be JSON" in done.stderr


def test_purge_asks_first(project: Project) -> None:
    tasks = project.module()
    tasks.add.delay(1, 1)
    done = project.liteq("purge", str(project.db), input="n\n")
    assert done.returncode == 1 and "Aborted" in done.stderr
    assert tasks.app.broker.depth()["celery"].ready == 1


def test_loglevel_names_any_case() -> None:
    from liteq.cli.base import loglevel_type

    assert loglevel_type("info") == loglevel_type("INFO") == 20
    with pytest.raises(click.BadParameter):
        loglevel_type("verbose")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_is_documented_in_the_readme(name: str) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    assert f"`liteq {name}" in section, f"README's Command line section lacks liteq {name}"
