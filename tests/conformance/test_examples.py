"""Celery's own ``examples/`` folder (Celery 5.7), with only the import and the URL changed.

Run here: app, tutorial, next-steps/proj, periodic-tasks, pydantic, and resultgraph
(which Celery 5 itself can no longer import: ``from celery import task`` was removed;
it gets the one-line fix Celery needs, ``shared_task as task``, and the pickle result
serializer without which Celery never prints the graph its comment shows).

Not run here, and why:

* django: the Django integration has an issue of its own.
* eventlet, gevent: need the eventlet/gevent pools (liteq has prefork, threads and solo)
  and fetch pages from the internet; both also use ``from celery import task``.
* celery_http_gateway: a Django 1.x project using ``from celery import task``.
* quorum-queues: RabbitMQ quorum queues (``x-queue-type``, ``confirm_publish``).
* security: message signing (``task_serializer='auth'``, ``app.setup_security()``).
* stamping: the stamping API (visitors, ``stamped_headers``), which liteq doesn't have.
"""

from __future__ import annotations

import sys

from liteq.testing import WorkerProcess, wait_for
from tests.conformance.conftest import write_files
from tests.conformance.test_next_steps import PROJ
from tests.conftest import Project, _pythonpath


def _script_worker(project: Project, script: str, *args: str) -> WorkerProcess:
    """``python <script> <args>`` (the example calls ``app.start()``), stopped by pid."""
    worker = WorkerProcess(list(args), command=[sys.executable, script], cwd=project.root,
                           log=str(project.root / f"{script}-{len(project.workers)}.log"),
                           env={"PYTHONPATH": _pythonpath()})
    project.workers.append(worker)
    worker.start()
    return worker


def _run(project: Project, code: str) -> str:
    done = project.run(code)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


APP = {
    "myapp.py": '''
        """myapp.py

        Usage::

           (window1)$ python myapp.py worker -l INFO

           (window2)$ python
           >>> from myapp import add
           >>> add.delay(16, 16).get()
           32
        """
        from time import sleep

        from liteq import Celery

        app = Celery(
            'myapp',
            broker='@BROKER@',
            # ## add result backend here if needed.
            # backend='rpc'
            task_acks_late=True
        )


        @app.task
        def add(x, y):
            sleep(1)  # the example sleeps 10 s
            return x + y


        if __name__ == '__main__':
            app.start()
        ''',
}


def test_app_python_myapp_worker(project: Project) -> None:
    write_files(project, APP)
    # (window1)$ python myapp.py worker -l INFO
    _script_worker(project, "myapp.py", "worker", "-l", "INFO").wait_for_output("ready.", 30)
    # (window2)$ python  >>> from myapp import add; add.delay(16, 16).get()
    # The docstring's 32 needs a result backend in Celery (without one, get() raises
    # NotImplementedError: No result backend is configured); liteq keeps results in the
    # broker's store by design.
    out = _run(project, "from myapp import add; print(add.delay(16, 16).get(timeout=15))")
    assert out.split() == ["32"], out


def test_app_celery_A_myapp_colon_app_worker(project: Project) -> None:
    write_files(project, APP)
    # $ celery -A myapp:app worker -l INFO
    project.worker("-A", "myapp:app", "-l", "INFO", database="")
    out = _run(project, "from myapp import add; print(add.delay(16, 16).get(timeout=15))")
    assert out.split() == ["32"], out


def test_tutorial(project: Project) -> None:
    write_files(project, {
        "tasks.py": """
            from liteq import Celery

            app = Celery('tasks', broker='@BROKER@')


            @app.task()
            def add(x, y):
                return x + y


            if __name__ == '__main__':
                app.start()
            """,
    })
    project.worker("-A", "tasks", database="")
    # Celery has no result backend here, so its get() raises NotImplementedError
    # ("No result backend is configured"); liteq keeps results in the broker's store
    # by design, so the result comes back.
    out = _run(project, "from tasks import add; print(add.delay(4, 4).get(timeout=10))")
    assert out.split() == ["8"], out


def test_next_steps_proj(project: Project) -> None:
    write_files(project, PROJ)
    # $ celery -A proj worker -l INFO
    project.worker("-A", "proj", "-l", "INFO", database="")
    out = _run(project, """
        from liteq import chain, chord
        from proj.tasks import add, mul, xsum
        print(add.delay(2, 2).get(timeout=10))
        print(chain(add.s(4, 4) | mul.s(8))().get(timeout=10))
        print(chord((add.s(i, i) for i in range(10)), xsum.s())().get(timeout=10))
        """)
    assert out.split() == ["4", "64", "90"], out


def test_periodic_tasks_myapp_worker_and_beat(project: Project) -> None:
    write_files(project, {
        "myapp.py": '''
            """myapp.py

            Usage::

               # The worker service reacts to messages by executing tasks.
               (window1)$ python myapp.py worker -l INFO

               # The beat service sends messages at scheduled intervals.
               (window2)$ python myapp.py beat -l INFO
            """

            from liteq import Celery

            app = Celery(
                # XXX The below 'myapp' is the name of this module, for generating
                # task names when executed as __main__.
                'myapp',
                broker='@BROKER@',
                # ## add result backend here if needed.
                # backend='rpc'
            )

            app.conf.timezone = 'UTC'


            @app.task
            def say(what):
                print(what)


            @app.on_after_configure.connect
            def setup_periodic_tasks(sender, **kwargs):
                # Calls say('hello') every 10 seconds (here: every second).
                sender.add_periodic_task(1.0, say.s('hello'), name='add every 10')


            if __name__ == '__main__':
                app.start()
            ''',
    })
    worker = _script_worker(project, "myapp.py", "worker", "-l", "INFO")
    worker.wait_for_output("ready.", 30)
    beat = _script_worker(project, "myapp.py", "beat", "-l", "INFO")
    wait_for(lambda: "hello" in worker.output() or beat.returncode is not None, 10,
             message="say('hello') printed by the worker")
    assert "hello" in worker.output(), f"worker:\n{worker.output()}\nbeat:\n{beat.output()}"


def test_pydantic(project: Project) -> None:
    write_files(project, {
        "tasks.py": """
            from pydantic import BaseModel

            from liteq import Celery

            app = Celery('tasks', broker='@BROKER@')


            class ArgModel(BaseModel):
                value: int


            class ReturnModel(BaseModel):
                value: str


            @app.task(pydantic=True)
            def x(arg: ArgModel) -> ReturnModel:
                # args/kwargs type hinted as Pydantic model will be converted
                assert isinstance(arg, ArgModel)
                # The returned model will be converted to a dict automatically
                return ReturnModel(value=f"example: {arg.value}")
            """,
    })
    project.worker("-A", "tasks", database="")
    out = _run(project, """
        from tasks import ArgModel, x
        print(x.delay({'value': 1}).get(timeout=10))
        print(x.delay(ArgModel(value=2)).get(timeout=10))
        """)
    assert out.splitlines() == ["{'value': 'example: 1'}", "{'value': 'example: 2'}"], out


RESULTGRAPH = '''
    # Example::
    #    >>> R = A.apply_async()
    #    >>> list(joinall(R))
    #    [['A 0', 'A 1', 'A 2', 'A 3', 'A 4', 'A 5', 'A 6', 'A 7', 'A 8', 'A 9'],
    #    ...
    #    ['H 0', 'H 1', 'H 2', 'H 3', 'H 4', 'H 5', 'H 6', 'H 7', 'H 8', 'H 9']]

    from collections import deque

    from liteq import Celery, chord, group, signature, uuid
    from liteq import shared_task as task  # Celery 5 removed ``from celery import task``
    from liteq.result import AsyncResult, ResultSet, allow_join_result

    app = Celery('tasks', broker='@BROKER@')
    # Celery returns the GroupResult of A() as a result only with pickle.
    app.conf.update(result_serializer='pickle', accept_content=['json', 'pickle'],
                    result_accept_content=['json', 'pickle'])


    @task()
    def add(x, y):
        return x + y


    @task()
    def make_request(id, url):
        print(f'-get: {url!r}')
        return url


    @task()
    def B_callback(urls, id):
        print(f'-batch {id} done')
        return urls


    @task()
    def B(id):
        return chord(
            make_request.s(id, f'{id} {i!r}')
            for i in range(10)
        )(B_callback.s(id))


    @task()
    def A():
        return group(B.s(c) for c in 'ABCDEFGH').apply_async()


    def joinall(R, timeout=None, propagate=True):
        stack = deque([R])

        try:
            use_native = joinall.backend.supports_native_join
        except AttributeError:
            use_native = False

        while stack:
            res = stack.popleft()
            if isinstance(res, ResultSet):
                j = res.join_native if use_native else res.join
                stack.extend(j(timeout=timeout, propagate=propagate))
            elif isinstance(res, AsyncResult):
                stack.append(res.get(timeout=timeout, propagate=propagate))
            else:
                yield res
    '''


def test_resultgraph(project: Project) -> None:
    write_files(project, {"tasks.py": RESULTGRAPH})
    project.worker("-A", "tasks", database="")
    out = _run(project, """
        from tasks import A, joinall
        R = A.apply_async()
        print(list(joinall(R, timeout=20)))
        """)
    expected = [[f"{c} {i}" for i in range(10)] for c in "ABCDEFGH"]
    assert out.strip() == repr(expected), out
