"""``liteq shell``: a Python shell with the app and its tasks, as ``celery shell``."""

from __future__ import annotations

from tests.conftest import Project

SCRIPT = """\
print("sum", add.delay(2, 3).get(timeout=15))
print("names", app is celery, *map(callable, (signature, chain, group, chord)))
print("canvas", (add.s(1, 1) | add.s(10))().get(timeout=15))
"""


def test_shell_has_the_app_its_tasks_and_the_canvas(project: Project) -> None:
    tasks = project.module()
    project.worker()
    done = project.liteq("-A", tasks.__name__, "shell", "--python", input=SCRIPT)
    assert done.returncode == 0, done.stderr
    assert "sum 5" in done.stdout
    assert "names True True True True True" in done.stdout
    assert "canvas 12" in done.stdout
    assert "liteq shell" in done.stderr and "add" in done.stderr  # the banner names tasks


def test_shell_on_a_database_path_and_without_tasks(project: Project) -> None:
    project.module()
    done = project.liteq("shell", str(project.db), "-T", "-P",
                         input="print('app', app.broker_url.endswith('tasks.db'))\n"
                               "print('add' in dir())\n")
    assert done.returncode == 0, done.stderr
    assert "app True" in done.stdout and "False" in done.stdout


def test_shell_ipython_missing_is_one_clear_line(project: Project) -> None:
    done = project.liteq("shell", str(project.db), "--ipython", input="")
    try:
        import IPython  # noqa: F401
    except ImportError:
        assert done.returncode == 1
        assert "IPython is not installed" in done.stderr and "Traceback" not in done.stderr
    else:
        assert done.returncode == 0
