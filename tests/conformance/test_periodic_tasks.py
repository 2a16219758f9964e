"""Celery's "Periodic Tasks" page, pasted with only the import and the broker URL changed.

docs/userguide/periodic-tasks.rst (Celery 5.7): entries from ``on_after_configure``
with ``add_periodic_task``, the ``beat_schedule`` setting, scheduling a workflow through
a wrapper task, the crontab table (checked through ``remaining_estimate``), solar
schedules, and starting beat (``beat -s``, ``worker -B``).

Beat fires an interval entry one interval after it starts, so waiting for the page's
10 and 30 second entries would take as long; the tests that watch entries fire use the
page's code with a one second interval instead.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone

import pytest

from liteq import LiteQError
from liteq.schedules import crontab
from liteq.testing import WorkerProcess, wait_for
from tests.conformance.conftest import write_files
from tests.conftest import Project, _pythonpath

ENTRIES = {
    "tasks.py": """
        from liteq import Celery
        from liteq.schedules import crontab

        app = Celery(broker='@BROKER@')

        @app.on_after_configure.connect
        def setup_periodic_tasks(sender: Celery, **kwargs):
            # Calls test('hello') every 10 seconds.
            sender.add_periodic_task(10.0, test.s('hello'), name='add every 10')

            # Calls test('hello') every 30 seconds.
            # It uses the same signature of previous task, an explicit name is
            # defined to avoid this task replacing the previous one defined.
            sender.add_periodic_task(30.0, test.s('hello'), name='add every 30')

            # Calls test('world') every 30 seconds
            sender.add_periodic_task(30.0, test.s('world'), expires=10)

            # Executes every Monday morning at 7:30 a.m.
            sender.add_periodic_task(
                crontab(hour=7, minute=30, day_of_week=1),
                test.s('Happy Mondays!'),
            )

        @app.task
        def test(arg):
            print(arg)

        @app.task
        def add(x, y):
            z = x + y
            print(z)
        """,
}


def test_add_periodic_task_fills_beat_schedule(project: Project) -> None:
    write_files(project, ENTRIES)
    done = project.run("""
        import json
        from tasks import app
        schedule = app.conf.beat_schedule
        print(json.dumps({key: [entry['task'], list(entry.get('args', ())),
                                entry.get('options', {})]
                          for key, entry in schedule.items()}))
        """)
    assert done.returncode == 0, done.stderr
    # What Celery 5.7 holds: unnamed entries are keyed by the signature's repr.
    assert json.loads(done.stdout) == {
        "add every 10": ["tasks.test", ["hello"], {}],
        "add every 30": ["tasks.test", ["hello"], {}],
        "tasks.test('world')": ["tasks.test", ["world"], {"expires": 10}],
        "tasks.test('Happy Mondays!')": ["tasks.test", ["Happy Mondays!"], {}],
    }, done.stdout


def _worker_with_beat(project: Project, module: str, *args: str) -> WorkerProcess:
    # $ celery -A proj worker -B
    return project.worker("-A", module, "-B", *args, database="")


def test_entries_fire_from_on_after_configure(project: Project) -> None:
    write_files(project, {"tasks.py": ENTRIES["tasks.py"].replace(
        "add_periodic_task(10.0, test.s('hello'), name='add every 10')",
        "add_periodic_task(1.0, test.s('hello'), name='add every 10')")})
    worker = _worker_with_beat(project, "tasks")
    wait_for(lambda: worker.output().count("hello") >= 2, 10,
             message="test('hello') printed twice by the worker")


def test_beat_schedule_setting_fires(project: Project) -> None:
    write_files(project, {
        "tasks.py": """
            from liteq import Celery

            app = Celery('tasks', broker='@BROKER@')

            @app.task
            def add(x, y):
                z = x + y
                print(z)

            app.conf.beat_schedule = {
                'add-every-30-seconds': {
                    'task': 'tasks.add',
                    'schedule': 1.0,  # the page: 30.0
                    'args': (16, 16)
                },
            }
            app.conf.timezone = 'UTC'
            """,
    })
    worker = _worker_with_beat(project, "tasks")
    wait_for(lambda: "32" in worker.output(), 10, message="add(16, 16) printed by the worker")


def test_a_wrapper_task_schedules_a_group(project: Project) -> None:
    write_files(project, {
        "tasks.py": """
            from liteq import Celery, group

            app = Celery('tasks', broker='@BROKER@')

            @app.task
            def add(x, y):
                return x + y

            @app.task
            def run_add_group():
                group(add.s(i, i) for i in range(10)).apply_async()

            @app.on_after_configure.connect
            def setup_periodic_tasks(sender: Celery, **kwargs):
                sender.add_periodic_task(1.0, run_add_group.s(), name='add group every 30')
            """,
    })
    worker = _worker_with_beat(project, "tasks")
    wait_for(lambda: worker.output().count("] succeeded in") >= 11, 10,
             message="run_add_group and its ten adds succeeded")
    output = worker.output()
    assert "Task tasks.run_add_group[" in output
    assert output.count("Task tasks.add[") >= 10, output[-3000:]


def test_beat_with_a_schedule_file_option(project: Project) -> None:
    """``celery -A proj beat -s /home/celery/var/run/celerybeat-schedule``: the option
    is accepted (liteq keeps the schedule in the store) and beat sends the tasks."""
    write_files(project, {
        "tasks.py": """
            from liteq import Celery

            app = Celery('tasks', broker='@BROKER@')

            @app.task
            def add(x, y):
                z = x + y
                print(z)

            app.conf.beat_schedule = {
                'add-every-second': {'task': 'tasks.add', 'schedule': 1.0, 'args': (16, 16)},
            }
            """,
    })
    worker = project.worker("-A", "tasks", database="")
    beat = WorkerProcess(["-A", "tasks", "beat", "-s",
                          str(project.root / "celerybeat-schedule")],
                         command=[sys.executable, "-m", "liteq"],
                         cwd=project.root, log=str(project.root / "beat.log"),
                         env={"PYTHONPATH": _pythonpath()})
    project.workers.append(beat)
    beat.start()
    wait_for(lambda: "32" in worker.output() or beat.returncode is not None, 10,
             message="add(16, 16) sent by beat -s")
    assert beat.returncode is None, f"beat -s exited:\n{beat.output()}"
    assert "32" in worker.output()


def _next_runs(schedule: crontab, after: datetime, count: int) -> list[str]:
    """The next ``count`` runs after ``after``, read through remaining_estimate()."""
    runs, last = [], after
    for _ in range(count):
        now = datetime.now(timezone.utc)
        due = now + schedule.remaining_estimate(last)
        due = due.replace(second=0, microsecond=0) + (
            timedelta(minutes=1) if due.second >= 30 else timedelta())
        runs.append(due.strftime("%Y-%m-%d %H:%M"))
        last = due
    return runs


MONDAY = datetime(2026, 1, 5, 0, 0, tzinfo=timezone.utc)


def _hours(runs: list[str]) -> list[int]:
    return [int(run[11:13]) for run in runs]


@pytest.mark.parametrize(("fields", "count", "expected"), [
    # crontab(): Execute every minute.
    ({}, 3, ["2026-01-05 00:01", "2026-01-05 00:02", "2026-01-05 00:03"]),
    # crontab(minute=0, hour=0): Execute daily at midnight.
    ({"minute": 0, "hour": 0}, 2, ["2026-01-06 00:00", "2026-01-07 00:00"]),
    # crontab(minute='*/15'): Execute every 15 minutes.
    ({"minute": "*/15"}, 4, ["2026-01-05 00:15", "2026-01-05 00:30", "2026-01-05 00:45",
                             "2026-01-05 01:00"]),
    # crontab(day_of_week='sunday'): Execute every minute (!) at Sundays.
    ({"day_of_week": "sunday"}, 2, ["2026-01-11 00:00", "2026-01-11 00:01"]),
    ({"minute": "*", "hour": "*", "day_of_week": "sun"}, 2,
     ["2026-01-11 00:00", "2026-01-11 00:01"]),
    # every ten minutes between 3-4 am, 5-6 pm and 10-11 pm on Thursdays or Fridays
    ({"minute": "*/10", "hour": "3,17,22", "day_of_week": "thu,fri"}, 7,
     ["2026-01-08 03:00", "2026-01-08 03:10", "2026-01-08 03:20", "2026-01-08 03:30",
      "2026-01-08 03:40", "2026-01-08 03:50", "2026-01-08 17:00"]),
    # crontab(0, 0, day_of_month='2'): on the second day of every month.
    ({"minute": 0, "hour": 0, "day_of_month": "2"}, 2, ["2026-02-02 00:00",
                                                        "2026-03-02 00:00"]),
    # every even numbered day
    ({"minute": 0, "hour": 0, "day_of_month": "2-30/2"}, 3,
     ["2026-01-06 00:00", "2026-01-08 00:00", "2026-01-10 00:00"]),
    # the first and third weeks of the month
    ({"minute": 0, "hour": 0, "day_of_month": "1-7,15-21"}, 3,
     ["2026-01-06 00:00", "2026-01-07 00:00", "2026-01-15 00:00"]),
    # on the eleventh of May every year
    ({"minute": 0, "hour": 0, "day_of_month": "11", "month_of_year": "5"}, 2,
     ["2026-05-11 00:00", "2027-05-11 00:00"]),
    # Executes every Monday morning at 7:30 a.m.
    ({"hour": 7, "minute": 30, "day_of_week": 1}, 2, ["2026-01-05 07:30",
                                                      "2026-01-12 07:30"]),
], ids=["every-minute", "daily-at-midnight", "every-15-minutes", "sundays",
        "sundays-spelled-out", "thu-fri-office-hours", "second-of-month", "even-days",
        "first-and-third-weeks", "eleventh-of-may", "monday-7:30"])
def test_crontab_examples(fields: dict[str, object], count: int, expected: list[str]) -> None:
    assert _next_runs(crontab(**fields), MONDAY, count) == expected


@pytest.mark.parametrize(("fields", "hours"), [
    # every three hours: midnight, 3am, 6am, 9am, noon, 3pm, 6pm, 9pm
    ({"minute": 0, "hour": "*/3"}, [0, 3, 6, 9, 12, 15, 18, 21]),
    ({"minute": 0, "hour": "0,3,6,9,12,15,18,21"}, [0, 3, 6, 9, 12, 15, 18, 21]),
    # every even hour, and every hour divisible by three
    ({"minute": 0, "hour": "*/2,*/3"}, [0, 2, 3, 4, 6, 8, 9, 10, 12, 14, 15, 16, 18, 20,
                                        21, 22]),
    # hours divisible by 5: 3pm (15), not 5pm
    ({"minute": 0, "hour": "*/5"}, [0, 5, 10, 15, 20]),
    # every hour divisible by 3, and every hour during office hours (8am-5pm)
    ({"minute": 0, "hour": "*/3,8-17"}, [0, 3, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
                                         18, 21]),
], ids=["every-three-hours", "hour-list", "even-or-by-three", "by-five",
        "by-three-and-office-hours"])
def test_crontab_hours_of_a_day(fields: dict[str, object], hours: list[int]) -> None:
    runs = _next_runs(crontab(**fields), MONDAY - timedelta(minutes=1), len(hours))
    assert _hours(runs) == hours, runs


def test_crontab_first_month_of_every_quarter() -> None:
    runs = _next_runs(crontab(0, 0, month_of_year='*/3'), datetime(
        2026, 1, 30, 0, 0, tzinfo=timezone.utc), 3)
    assert runs == ["2026-01-31 00:00", "2026-04-01 00:00", "2026-04-02 00:00"], runs


def test_a_day_that_never_comes_is_refused() -> None:
    """Celery 5.7: ``crontab(0, 0, day_of_month='30', month_of_year='2')`` raises
    ValueError when created."""
    with pytest.raises(ValueError):
        crontab(0, 0, day_of_month='30', month_of_year='2')


def test_solar_schedules_work_or_say_what_to_use() -> None:
    """``from celery.schedules import solar``: liteq either computes solar events or
    refuses with an error that names what to use instead (issue 10, item 6)."""
    # The page's import, here so that a missing name fails this test only.
    from liteq.schedules import solar

    try:
        sunset = solar('sunset', -37.81753, 144.96715)
    except (LiteQError, ImportError, NotImplementedError) as exc:
        assert "crontab" in str(exc) or "ephem" in str(exc), str(exc)
    else:
        remaining = sunset.remaining_estimate(datetime.now(timezone.utc))
        assert timedelta(0) <= remaining <= timedelta(days=1), remaining
