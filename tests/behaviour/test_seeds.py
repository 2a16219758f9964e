"""The seeds: each Celery tutorial snippet our users come from, in its liteq form.

The changes a user makes are the import (``from liteq import Celery``; kombu's
``Queue``/``Exchange`` -> ``liteq.Queue``/``liteq.Exchange``) and the broker URL (a
file). Everything else is the tutorial's own code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from liteq.testing import WorkerProcess, wait_for
from tests.conftest import Project, _pythonpath


def _write(project: Project, files: dict[str, str]) -> None:
    """Write the seed's files; its broker (``sqlite:///@DB@``) is the project's, so every
    seed runs on each transport."""
    for name, text in files.items():
        path = project.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).replace("sqlite:///@DB@", project.broker_url))


def _worker(project: Project, *args: str) -> WorkerProcess:
    worker = WorkerProcess(["-P", "solo", "-l", "info", *args], cwd=project.root,
                           log=str(project.root / f"w{len(project.workers)}.log"),
                           env={"PYTHONPATH": f"{project.root}{os.pathsep}{_pythonpath()}"})
    project.workers.append(worker)
    worker.start().wait_for_output("ready.", 30)
    return worker


def _run(project: Project, code: str) -> str:
    done = project.run(code)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_seed_000_basics_config_routing_and_database_task(project: Project) -> None:
    _write(project, {
        "config_file_name.py": """
            broker_url = 'sqlite:///@DB@'
            result_backend = 'rpc://'
            task_serializer = 'json'
            result_serializer = 'json'
            accept_content = ['json']
            timezone = 'Europe/Oslo'
            enable_utc = True
            task_routes = {'tasks.add': 'low-priority'}
            task_annotations = {'tasks.add': {'rate_limit': '10/m'}}
            """,
        "tasks.py": """
            from liteq import Celery, Task, Queue, Exchange
            app = Celery("tasks")
            app.config_from_object('config_file_name')
            app.conf.task_queues = (
                Queue('default', Exchange('default'), routing_key='default'),
                Queue('videos',  Exchange('media'),   routing_key='media.video'),
                Queue('images',  Exchange('media'),   routing_key='media.image'),
                Queue('low-priority'),
            )
            app.conf.task_routes = {
                'tasks.add': 'low-priority',
                'project.videos.*': {'queue': 'videos'},
                'tasks.*': {'queue': 'default'},
            }

            class Database:
                connections = 0
                @classmethod
                def connect(cls):
                    cls.connections += 1
                    return cls()

            class DatabaseTask(Task):
                _db = None

                @property
                def db(self):
                    if self._db is None:
                        self._db = Database.connect()
                    return self._db

            @app.task
            def add(x, y):
                return x + y

            @app.task(base=DatabaseTask)
            def process_rows():
                process_rows.db
                process_rows.db
                return Database.connections

            @app.task(name="project.videos.encode")
            def encode(name):
                return name.upper()

            @app.task
            def broken():
                raise ValueError("bad row")
            """,
    })
    _worker(project, "-A", "tasks", "-Q", "low-priority,default")
    out = _run(project, """
        from tasks import add, process_rows, broken
        res = add.delay(4, 4)
        result = res.get(timeout=10, propagate=False)
        print(result, res.ready())
        print(process_rows.delay().get(timeout=10), process_rows.delay().get(timeout=10))
        bad = broken.delay()
        print(repr(bad.get(timeout=10, propagate=False)), "ValueError: bad row" in bad.traceback)
        """)
    assert out.splitlines() == ["8 True", "1 1", "ValueError('bad row') True"]
    _worker(project, "-A", "tasks", "-Q", "videos", "--hostname=y@%h")
    assert _run(project, "from tasks import encode; print(encode.delay('clip').get(timeout=10))") \
        == "CLIP"


def test_seed_001_old_setting_names_annotations_and_app_start(project: Project) -> None:
    _write(project, {
        "config.py": """
            BROKER_URL = 'sqlite:///@DB@'
            CELERY_RESULT_BACKEND = 'sqlite:///@DB@'
            CELERY_IMPORTS = ('tasks', )
            CELERY_TASK_SERIALIZER = 'json'
            CELERY_RESULT_SERIALIZER = 'json'
            CELERY_ACCEPT_CONTENT=['json']
            CELERY_TIMEZONE = 'Europe/Oslo'
            CELERY_ENABLE_UTC = True
            CELERY_ROUTES = {
                #'tasks.add': 'low-priority',
            }
            BROKER_POOL_LIMIT = 10
            CELERY_TASK_RESULT_EXPIRES = 3600
            CELERY_MAX_CACHED_RESULTS = 10000

            def my_on_failure(self, exc, task_id, args, kwargs, einfo):
                with open('failures.txt', 'a') as out:
                    out.write('Oh no! Task failed: {0!r}\\n'.format(exc))

            CELERY_ANNOTATIONS = {'*': {'on_failure': my_on_failure}}
            """,
        "mycelery.py": """
            from liteq import Celery
            app = Celery('mycelery')
            app.config_from_object('config')

            if __name__=='__main__':
                  app.start()
            """,
        "tasks.py": """
            from mycelery import app
            @app.task
            def add(a, b):
              return a + b

            @app.task
            def fail():
                raise RuntimeError("boom")
            """,
    })
    # "python mycelery.py worker": app.start() runs the command line
    worker = WorkerProcess(["-P", "solo", "-l", "info"], cwd=project.root,
                           command=[sys.executable, "mycelery.py", "worker"],
                           log=str(project.root / "start.log"),
                           env={"PYTHONPATH": f"{project.root}{os.pathsep}{_pythonpath()}"})
    worker.start()
    project.workers.append(worker)
    worker.wait_for_output("ready.", 30)
    out = _run(project, """
        from tasks import add, fail
        result=add.delay(4, 4)
        print(result.get(timeout = 10))
        print(repr(fail.delay().get(timeout=10, propagate=False)))
        """)
    assert out.splitlines() == ["8", "RuntimeError('boom')"]
    wait_for(lambda: (project.root / "failures.txt").exists(), 10)
    assert "Oh no! Task failed: RuntimeError('boom')" in (project.root / "failures.txt").read_text()


def test_seed_001_and_004_multi_start_stop_restart(project: Project) -> None:
    _write(project, {"project.py": """
        from liteq import Celery
        app = Celery('project', broker='sqlite:///@DB@')
        @app.task
        def add(x, y):
            return x + y
        """})
    env = {**os.environ, "PYTHONPATH": f"{project.root}{os.pathsep}{_pythonpath()}"}

    def multi(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "liteq", "multi", *args], cwd=project.root,
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        assert "w1@" in multi("start", "w1", "-A", "project", "-l", "info")
        assert "w2@" in multi("start", "w2", "-A", "project", "-l", "info")
        assert _run(project, "from project import add; print(add.delay(2, 3).get(timeout=10))") \
            == "5"
        old = (project.root / "w1.pid").read_text()
        multi("restart", "w1", "-A", "project", "-l", "info")
        assert (project.root / "w1.pid").read_text() != old
        assert "stopped" in multi("stopwait", "w1", "w2")
        assert not (project.root / "w1.pid").exists() and not (project.root / "w2.pid").exists()
    finally:
        for name in ("w1", "w2"):
            pid = project.root / f"{name}.pid"
            if pid.exists():
                os.kill(int(pid.read_text()), signal.SIGKILL)


def test_seed_002_apply_async_options_and_topic_routing(project: Project) -> None:
    _write(project, {"proj/__init__.py": "", "proj/tasks.py": """
        from liteq import Celery, Queue, Exchange
        app = Celery('proj', broker='sqlite:///@DB@')
        app.conf.update(
            CELERY_QUEUES = (
                Queue('default', routing_key="task.#"),
                Queue('web_tasks', routing_key="web.#"),
                Queue('transient', routing_key='transient', delivery_mode=1),
            ),
            CELERY_DEFAULT_EXCHANGE = 'tasks',
            CELERY_DEFAULT_EXCHANGE_TYPE = 'topic',
            CELERY_DEFAULT_ROUTING_KEY = 'task.default',
            CELERY_ROUTES = {
                'proj.tasks.add': {
                    'queue': 'web_tasks',
                    'routing_key': 'web.add',
                }},
        )

        @app.task
        def add(x, y):
            return x + y

        @app.task
        def mul(x, y):
            return x * y
        """})
    _worker(project, "-A", "proj.tasks", "-Q", "web_tasks")
    _worker(project, "-A", "proj.tasks", "-Q", "default")
    out = _run(project, """
        from datetime import datetime, timedelta
        from proj.tasks import add, mul
        print(add.delay(2, 3).get(timeout=10))
        print(add.apply_async((2,3), countdown=1).get(timeout=10))
        now = datetime.now()
        print(add.apply_async((2,3), eta=now+timedelta(seconds=1)).get(timeout=10))
        print(add.apply_async((2,3), expires=60).get(timeout=10))
        print(add.apply_async((2,3), retry=False).get(timeout=10))
        print(add.apply_async((2,3), retry=True, retry_policy={
            'max_retries': 3, 'interval_start': 0, 'interval_step': 0.2,
            'interval_max': 0.2}).get(timeout=10))
        print(add.apply_async(args=[2, 3], kwargs={}).get(timeout=10))
        print(mul.apply_async((2, 3), routing_key='task.mul').get(timeout=10))
        """)
    assert out.splitlines() == ["5"] * 7 + ["6"]


def test_seed_003_package_worker_beat_and_periodic_tasks(project: Project) -> None:
    _write(project, {
        "celery_task/__init__.py": "",
        "celery_task/celery.py": """
            from liteq import Celery, Queue, Exchange
            app = Celery('celery_task', broker='sqlite:///@DB@', include=['celery_task.tasks'])
            app.conf.task_default_queue = "default"
            app.conf.task_queues = {
                Queue('default', Exchange('default', type='direct'), routing_key='default'),
                Queue('asyn', Exchange('asyn', type='direct'), routing_key='asyn'),
                Queue('delay', Exchange('delay', type='direct'), routing_key='delay'),
            }
            app.conf.task_routes = {
                'celery_task.tasks.add': {'queue': 'asyn', 'routing_key': 'asyn'},
                'celery_task.tasks.multi': {'queue': 'delay', 'routing_key': 'delay'},
            }
            app.conf.beat_schedule = {
                'add-every-second': {
                    'task': 'celery_task.tasks.add',
                    'schedule': 1.0,
                    'args': (16, 16)
                },
            }
            app.conf.timezone = 'UTC'
            """,
        "celery_task/tasks.py": """
            from .celery import app

            @app.on_after_configure.connect
            def setup_periodic_tasks(sender, **kwargs):
                sender.add_periodic_task(1.0, test.s('hello'), name='add every 1')
                sender.add_periodic_task(1.0, test.s('world'), expires=10)

            @app.task
            def test(arg):
                with open('periodic.txt', 'a') as out:
                    out.write(arg + '\\n')

            @app.task
            def add(x, y):
                return x + y

            @app.task
            def multi(x, y):
                return x * y
            """,
    })
    _worker(project, "-A", "celery_task", "-B")
    out = _run(project, """
        from celery_task.tasks import add, multi
        print(add.delay(10, 20).get(timeout=10), multi.delay(3, 4).get(timeout=10))
        """)
    assert out.splitlines() == ["30 12"]
    wait_for(lambda: (project.root / "periodic.txt").exists() and
             {"hello", "world"} <= set((project.root / "periodic.txt").read_text().split()), 20)
    shown = project.liteq("-A", "celery_task", "beat", "--show")
    assert "add-every-second" in shown.stdout and "add every 1" in shown.stdout


def test_seed_004_django_settings_autodiscover_and_c_force_root(project: Project) -> None:
    pytest.importorskip("django")
    _write(project, {
        "scs/__init__.py": "",
        "scs/settings.py": """
            SECRET_KEY = 'x'
            INSTALLED_APPS = ['local']
            REDIS_HOST = 'unused'
            CELERYD_MAX_TASKS_PER_CHILD = 100
            CELERY_TASK_RESULT_EXPIRES = 600
            CELERY_TIMEZONE = 'Asia/Shanghai'
            """,
        "local/__init__.py": "",
        "local/celery.py": """
            from __future__ import absolute_import, unicode_literals
            from liteq import Celery, platforms
            import os

            os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'scs.settings')
            import django
            django.setup()
            from django.conf import settings

            BROKER = 'sqlite:///@DB@'
            BACKEND = 'sqlite:///@DB@'

            app = Celery('data_handle', broker=BROKER, backend=BACKEND)
            platforms.C_FORCE_ROOT = True
            app.config_from_object('django.conf:settings')
            app.autodiscover_tasks(lambda: settings.INSTALLED_APPS)
            """,
        "local/tasks.py": """
            from .celery import app

            @app.task
            def cal(symbol):
                '''task body'''
                return 'ook'
            """,
    })
    _worker(project, "-A", "local.celery", "-P", "prefork", "-c", "1")
    out = _run(project, """
        from local import tasks
        from local.celery import app
        print(tasks.cal.delay("AAPL").get(timeout=10))
        print(app.conf.worker_max_tasks_per_child, app.conf.result_expires, app.conf.timezone)
        """)
    assert out.splitlines() == ["ook", "100 600 Asia/Shanghai"]


def test_seed_003_timedelta_eta_as_written(project: Project) -> None:
    _write(project, {"t3.py": """
        from liteq import Celery
        app = Celery('t3', broker='sqlite:///@DB@')
        @app.task
        def add(x, y):
            return x + y
        """})
    _worker(project, "-A", "t3")
    started = time.time()
    out = _run(project, """
        from datetime import datetime, timedelta
        from t3 import add
        now = datetime.now()
        print(add.apply_async((2,3), eta=now+timedelta(seconds=1)).get(timeout=10))
        """)
    assert out == "5" and time.time() - started >= 1

