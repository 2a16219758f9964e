"""Names real Celery projects import (issue 10, item 6), used as Celery's user guide does,
each with a real worker on a SQLite file and on Redis: ``current_task`` and
``current_app``, ``get_task_logger``, ``celeryd_init`` / ``celeryd_after_setup``,
``@app.task(pydantic=True)``, and a worker in a thread of this process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest

import liteq
from liteq.testing import wait_for
from liteq.worker.background import WorkerThread, run_worker
from tests.conftest import Project, _pythonpath

NAMES = '''
import json
import os

from liteq import LiteQ, current_app, current_task
from liteq.utils.log import get_task_logger

app = LiteQ(__name__, broker="@BROKER@")
logger = get_task_logger(__name__)


@app.task
def who():
    return {"id": current_task.request.id, "name": current_task.name,
            "same": current_task._get_current_object() is who,
            "app": current_app.main, "is_app": current_app._get_current_object() is app}


@app.task(bind=True)
def nested(self):
    inner = who()  # called directly: current_task is `who` inside, `nested` after
    return {"inner": inner["name"], "after": current_task.name, "id": self.request.id,
            "inner_id": inner["id"]}


@app.task
def add(x, y):
    logger.debug("not shown at -l info")
    logger.info("Adding %s + %s", x, y)
    logger.warning("careful with %s", x)
    return x + y
'''


def test_current_task_and_current_app_in_a_worker(project: Project) -> None:
    tasks = project.module(NAMES)
    project.worker(pool="prefork", global_args=("-A", tasks.__name__), database="")
    result = tasks.who.delay()
    seen = result.get(timeout=20)
    assert seen == {"id": result.id, "name": tasks.who.name, "same": True,
                    "app": tasks.__name__, "is_app": True}
    nested = tasks.nested.delay()
    seen = nested.get(timeout=20)
    assert seen == {"inner": tasks.who.name, "after": tasks.nested.name, "id": nested.id,
                    "inner_id": None}


def test_current_task_outside_tasks_and_in_eager_mode(project: Project) -> None:
    tasks = project.module(NAMES)
    assert not liteq.current_task
    assert liteq.current_task._get_current_object() is None
    assert liteq.current_app.main == tasks.__name__
    tasks.app.conf.task_always_eager = True
    result = tasks.who.delay()
    assert result.get() == {"id": result.id, "name": tasks.who.name, "same": True,
                            "app": tasks.__name__, "is_app": True}
    assert not liteq.current_task  # popped again


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_task_logger_writes_task_name_and_id_to_the_log_file(project: Project,
                                                              pool: str) -> None:
    tasks = project.module(NAMES)
    log = project.root / "worker.log"
    project.worker("-f", str(log), pool=pool, loglevel="info", wait=False,
                   global_args=("-A", tasks.__name__), database="")
    wait_for(lambda: log.exists() and "ready." in log.read_text(), 30, message="ready")
    result = tasks.add.delay(2, 3)
    assert result.get(timeout=20) == 5
    name = re.escape(tasks.add.name)
    wait_for(lambda: "careful with 2" in log.read_text(), 10, message="task log lines")
    text = log.read_text()
    # Celery's worker_task_log_format: [time: LEVEL/process] name[id]: message
    assert re.search(rf"^\[[^\]]+: INFO/[^\]]+\] {name}\[{result.id}\]: Adding 2 \+ 3$",
                     text, re.M), text
    assert re.search(rf"^\[[^\]]+: WARNING/[^\]]+\] {name}\[{result.id}\]: careful with 2$",
                     text, re.M), text
    assert "not shown at -l info" not in text
    # the worker's own lines keep the worker format (no task name and id in front)
    assert re.search(rf"^\[[^\]]+: INFO/[^\]]+\] Task {name}\[{result.id}\] succeeded",
                     text, re.M), text


@pytest.mark.parametrize("how", [("solo",), ("prefork", "--start-method", "spawn")],
                         ids=["solo", "spawn"])
def test_task_logger_goes_to_stderr_at_the_worker_level(project: Project,
                                                        how: tuple[str, ...]) -> None:
    tasks = project.module(NAMES)
    pool, *args = how
    worker = project.worker(*args, pool=pool, loglevel="warning",
                            global_args=("-A", tasks.__name__),
                            database="", wait=False)  # no -f: stderr (its log here)
    worker.wait_for_output("transport:")  # the banner (-l warning hides "ready.")
    result = tasks.add.delay(4, 5)
    assert result.get(timeout=20) == 9
    wait_for(lambda: "careful with 4" in worker.output(), 10, message="task log line")
    out = worker.output()
    assert f"{tasks.add.name}[{result.id}]: careful with 4" in out
    assert "Adding 4 + 5" not in out  # INFO is below -l warning


SIGNALS = '''
import json
import os

from liteq import LiteQ
from liteq.signals import celeryd_after_setup, celeryd_init

app = LiteQ(__name__, broker="@BROKER@")
REPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "signals.jsonl")


def report(**fields):
    with open(REPORT, "a") as handle:
        handle.write(json.dumps(fields) + "\\n")


@celeryd_init.connect(sender="special@example.com")
def configure_special(sender=None, conf=None, instance=None, options=None, **kwargs):
    # Celery's example: configure one node by name before it reads its settings.
    conf.task_default_queue = "special-default"
    report(signal="celeryd_init", sender=sender, conf_is_app_conf=conf is app.conf,
           hostname=instance.hostname, options=sorted(options),
           option_queues=options["queues"], option_concurrency=options["concurrency"])


@celeryd_init.connect(sender="other@example.com")
def configure_other(sender=None, **kwargs):
    report(signal="celeryd_init", sender=sender, wrong=True)


@celeryd_after_setup.connect
def setup_direct_queue(sender, instance, conf=None, **kwargs):
    # Celery's example: a queue of this node's own (sender is the node name).
    queue_name = f"{sender}.dq"
    instance.queues.append(queue_name)
    report(signal="celeryd_after_setup", sender=sender, queues=list(instance.queues),
           conf_is_app_conf=conf is app.conf)


@app.task
def where(value):
    return value
'''


def test_celeryd_init_and_celeryd_after_setup(project: Project) -> None:
    # Written, not imported: its receivers must not stay connected in this process.
    (project.root / "signal_tasks.py").write_text(
        textwrap.dedent(SIGNALS).replace("@BROKER@", project.broker_url))
    app = liteq.LiteQ("client", broker=project.broker_url)
    project.worker("-n", "special@example.com", "-c", "2", pool="threads",
                   global_args=("-A", "signal_tasks"), database="")
    lines = [json.loads(line) for line in
             (project.root / "signals.jsonl").read_text().splitlines()]
    assert [line["signal"] for line in lines] == ["celeryd_init", "celeryd_after_setup"]
    init, after = lines
    assert init["sender"] == "special@example.com"
    assert init["hostname"] == "special@example.com" and init["conf_is_app_conf"]
    assert {"queues", "concurrency", "pool", "hostname"} <= set(init["options"])
    assert init["option_queues"] is None and init["option_concurrency"] == 2
    # set in celeryd_init, so the worker consumes the default queue it named
    assert after["sender"] == "special@example.com" and after["conf_is_app_conf"]
    assert after["queues"] == ["special-default", "special@example.com.dq"]
    direct = app.send_task("signal_tasks.where", ("direct",), queue="special@example.com.dq")
    default = app.send_task("signal_tasks.where", ("default",), queue="special-default")
    assert direct.get(timeout=20) == "direct"
    assert default.get(timeout=20) == "default"


PYDANTIC = '''
from typing import Optional

from pydantic import BaseModel, ValidationInfo, field_validator

from liteq import LiteQ

app = LiteQ(__name__, broker="@BROKER@")


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


@app.task(bind=True, pydantic=True)
def maybe(self, arg: Optional[ArgModel] = None, *, scale: int = 1) -> Optional[ReturnModel]:
    if arg is None:
        return None
    return ReturnModel(value=f"{self.request.id}:{arg.value * scale}")


@app.task(pydantic=True, pydantic_strict=True)
def strict(arg: ArgModel) -> dict:
    return {"value": arg.value}


class Tagged(BaseModel):
    tag: str

    @field_validator("tag")
    @classmethod
    def with_context(cls, value: str, info: ValidationInfo) -> str:
        return f"{value}@{info.context['site']}/{info.context['celery_task_name']}"


@app.task(pydantic=True, pydantic_context={"site": "eu"},
          pydantic_dump_kwargs={"exclude": {"secret"}})
def tagged(item: Tagged) -> Tagged:
    return item


class WithSecret(BaseModel):
    tag: str
    secret: str = "hidden"


@app.task(pydantic=True, pydantic_dump_kwargs={"exclude": {"secret"}})
def unannotated(tag: str):
    return WithSecret(tag=tag)
'''


def test_pydantic_tasks_validate_arguments_and_dump_results(project: Project) -> None:
    pytest.importorskip("pydantic")  # in the test extra: always there in CI
    tasks = project.module(PYDANTIC)
    project.worker(global_args=("-A", tasks.__name__), database="")
    # the user guide's example, as written
    assert tasks.x.delay({"value": 1}).get(timeout=20) == {"value": "example: 1"}
    result = tasks.maybe.delay({"value": "21"}, scale=2)  # lax mode converts "21"
    assert result.get(timeout=20) == {"value": f"{result.id}:42"}
    assert tasks.maybe.delay(None).get(timeout=20) is None
    assert tasks.tagged.delay({"tag": "a"}).get(timeout=20) == \
        {"tag": f"a@eu/{tasks.tagged.name}"}
    assert tasks.unannotated.delay("t").get(timeout=20) == {"tag": "t"}
    bad = tasks.x.delay({"value": "not a number"})
    with pytest.raises(Exception) as info:
        bad.get(timeout=20)
    assert type(info.value).__name__ == "ValidationError"
    assert bad.state == "FAILURE" and "int_parsing" in bad.traceback
    with pytest.raises(Exception, match=r"int_type|should be a valid integer"):
        tasks.strict.delay({"value": "1"}).get(timeout=20)  # strict: no conversion
    assert tasks.strict.delay({"value": 1}).get(timeout=20) == {"value": 1}


def test_pydantic_without_pydantic_installed_is_a_clear_error(tmp_path) -> None:
    code = textwrap.dedent(f'''
        import sys
        sys.modules["pydantic"] = None  # as if pydantic were not installed
        from liteq import LiteQ, ImproperlyConfigured
        app = LiteQ("proj", broker={str(tmp_path / "t.db")!r})
        try:
            @app.task(pydantic=True)
            def x(arg):
                return arg
        except ImproperlyConfigured as exc:
            print("ERROR:", exc)
        else:
            print("no error")

        @app.task  # tasks without pydantic=True are unaffected
        def plain(arg):
            return arg
        print("plain:", plain(3))
    ''')
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": _pythonpath(), "PATH": ""})
    assert run.returncode == 0, run.stderr
    assert "ERROR: @app.task(pydantic=True) needs the pydantic library: pip install " \
        "'liteq[pydantic]'" in run.stdout
    assert "plain: 3" in run.stdout


# -- a worker in a thread of this process -------------------------------------------


def test_worker_thread_on_the_app_object_stops_warm(project: Project) -> None:
    tasks = project.module()

    @tasks.app.task
    def defined_here(x):  # not importable by name: only the app object knows it
        return x * 2

    worker = WorkerThread(tasks.app, pool="threads", concurrency=1,
                          prefetch_multiplier=4).start()
    assert worker.is_alive() and worker.queues == ["celery"]
    assert defined_here.delay(21).get(timeout=10) == 42
    running = tasks.sleep.delay(1.0)
    wait_for(lambda: running.state == "RECEIVED", 10)
    queued = [tasks.add.delay(i, i) for i in range(3)]
    worker.stop(timeout=20)
    assert not worker.is_alive()
    assert running.get(timeout=1) == 1.0  # finished, not interrupted
    assert [res.state for res in queued] == ["PENDING"] * 3  # returned to the queue
    assert tasks.app.broker.depth()["celery"].ready == 3
    with run_worker(tasks.app, pool="solo"):
        assert [res.get(timeout=10) for res in queued] == [0, 2, 4]


def test_worker_thread_refuses_what_it_cannot_do(project: Project) -> None:
    tasks = project.module()
    with pytest.raises(liteq.ImproperlyConfigured, match="unknown pool 'gevent'"):
        WorkerThread(tasks.app, pool="gevent")
    with pytest.raises(liteq.ImproperlyConfigured, match=r"unknown worker option.*'colour'"):
        WorkerThread(tasks.app, colour="blue")
    with pytest.raises(liteq.ImproperlyConfigured, match="no queues left"):
        WorkerThread(tasks.app, queues=["a"], exclude_queues=["a"])
    worker = WorkerThread(tasks.app, pool="solo")
    worker.stop()  # never started: nothing to do
    assert not worker.is_alive()
