"""Workers Guide: inspect and remote control of live workers, through the store.

Each test starts real workers (on SQLite and on Redis) and uses ``app.control`` or the
``liteq inspect`` / ``liteq control`` commands as Celery's docs write them.
"""

from __future__ import annotations

import json
import socket

import pytest

import liteq
from liteq.testing import wait_for
from tests.conftest import Project

HOST = socket.gethostname()

SHARED = '''
from liteq import LiteQ, shared_task

app = LiteQ(__name__, broker="@BROKER@")
app.conf.worker_heartbeat_interval = 0.5


@app.task
def add(x, y):
    return x + y


@shared_task
def shared_mul(x, y):
    return x * y


@app.task(rate_limit="1/m")
def limited(n):
    return n
'''


def _node(name: str = "liteq") -> str:
    return f"{name}@{HOST}"


def test_inspect_registered_lists_app_and_shared_tasks(project: Project) -> None:
    tasks = project.module(SHARED)
    project.worker("-A", tasks.__name__, database="")
    replies = tasks.app.control.inspect().registered()
    assert replies is not None
    names = replies[_node()]
    assert f"{tasks.__name__}.add" in names
    assert f"{tasks.__name__}.shared_mul" in names  # shared_task, as in Celery
    done = project.liteq("-A", tasks.__name__, "inspect", "registered", "--json")
    assert done.returncode == 0, done.stderr
    assert f"{tasks.__name__}.shared_mul" in json.loads(done.stdout)[_node()]
    # the banner lists them too
    assert f"{tasks.__name__}.shared_mul" in project.workers[0].output()


def test_inspect_scheduled_query_task_queues_conf_stats_ping(project: Project) -> None:
    tasks = project.module(SHARED)
    project.worker("-A", tasks.__name__, "-Q", "celery,extra", database="")
    app = tasks.app
    later = tasks.add.apply_async((2, 3), countdown=300, priority=5)
    inspect = app.control.inspect()

    scheduled = inspect.scheduled()
    assert scheduled is not None and list(scheduled) == [_node()]
    (entry,) = scheduled[_node()]
    assert entry["priority"] == 5 and entry["eta"]
    assert entry["request"]["id"] == later.id
    assert entry["request"]["name"] == f"{tasks.__name__}.add"
    assert entry["request"]["args"] == [2, 3]

    assert inspect.query_task(later.id) == {
        _node(): {later.id: ["scheduled", entry["request"]]}}
    assert inspect.query_task("no-such-id") == {_node(): {}}

    queues = inspect.active_queues()
    assert queues is not None
    assert [q["name"] for q in queues[_node()]] == ["celery", "extra"]
    conf = inspect.conf()
    assert conf is not None and conf[_node()]["worker_heartbeat_interval"] == 0.5
    stats = inspect.stats()
    assert stats is not None and stats[_node()]["pool"]["max-concurrency"] == 1
    assert inspect.ping() == {_node(): {"ok": "pong"}}
    assert app.control.ping() == [{_node(): {"ok": "pong"}}]
    assert app.control.inspect(destination=["nobody@nowhere"]).ping() is None

    for method in ("scheduled", "active_queues", "conf", "stats", "ping"):
        done = project.liteq("-A", tasks.__name__, "inspect", method)
        assert done.returncode == 0, (method, done.stderr)
        assert f"-> {_node()}: OK" in done.stdout
    done = project.liteq("inspect", "query_task", later.id, project.location, "-j")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[_node()][later.id][0] == "scheduled"
    later.revoke()


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_add_consumer_and_cancel_consumer(project: Project, pool: str) -> None:
    tasks = project.module(SHARED)
    project.worker("-A", tasks.__name__, "-c", "1", pool=pool, database="")
    app = tasks.app
    waiting = tasks.add.apply_async((1, 2), queue="images")
    assert tasks.add.delay(0, 0).get(timeout=15) == 0  # the worker runs; images waits
    assert app.broker.depth(["images"])["images"].ready == 1

    replies = app.control.add_consumer("images", reply=True)
    assert replies == [{_node(): {"ok": "add consumer images"}}]
    assert waiting.get(timeout=15) == 3
    queues = app.control.inspect().active_queues()
    assert queues is not None and [q["name"] for q in queues[_node()]] == ["celery", "images"]
    assert app.control.add_consumer("images", reply=True) == [
        {_node(): {"ok": "already consuming from images"}}]

    done = project.liteq("control", "cancel_consumer", "images", project.location)
    assert done.returncode == 0, done.stderr
    assert "no longer consuming from images" in done.stdout
    after = tasks.add.apply_async((5, 5), queue="images")
    assert tasks.add.delay(1, 1).get(timeout=15) == 2
    assert app.broker.depth(["images"])["images"].ready == 1
    assert after.state == "PENDING"
    done = project.liteq("-A", tasks.__name__, "control", "add_consumer", "images")
    assert done.returncode == 0 and "add consumer images" in done.stdout
    assert after.get(timeout=15) == 10


def test_cancel_the_last_queue_is_refused(project: Project) -> None:
    tasks = project.module(SHARED)
    project.worker("-A", tasks.__name__, database="")
    replies = tasks.app.control.cancel_consumer("celery", reply=True)
    assert replies is not None
    assert "only queue" in replies[0][_node()]["error"]
    assert tasks.add.delay(2, 2).get(timeout=15) == 4  # still consuming


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_rate_limit_reaches_the_shared_bucket(project: Project, pool: str) -> None:
    tasks = project.module(SHARED)
    project.worker("-A", tasks.__name__, "-c", "2", pool=pool, database="")
    app = tasks.app
    assert tasks.limited.delay(1).get(timeout=15) == 1  # took the bucket's one token
    replies = app.control.rate_limit(tasks.limited.name, "100/s", reply=True)
    assert replies == [{_node(): {"ok": "new rate limit set successfully"}}]
    # At 1/m the next token would come in a minute; at 100/s it is there at once.
    assert tasks.limited.delay(2).get(timeout=10) == 2
    done = project.liteq("-A", tasks.__name__, "control", "rate_limit",
                         tasks.limited.name, "0")
    assert done.returncode == 0, done.stderr
    assert "rate limit disabled successfully" in done.stdout
    results = [tasks.limited.delay(n) for n in range(5)]
    assert [r.get(timeout=10) for r in results] == list(range(5))


def test_control_bad_input_is_refused_clearly(project: Project) -> None:
    tasks = project.module(SHARED)
    project.worker("-A", tasks.__name__, database="")
    app = tasks.app
    with pytest.raises(ValueError, match="unknown control command 'reboot'"):
        app.control.broadcast("reboot")
    with pytest.raises(ValueError, match="rate limit must be"):
        app.control.rate_limit(tasks.add.name, "fast")
    replies = app.control.rate_limit("no.such.task", "1/s", reply=True)
    assert replies == [{_node(): {"error": "unknown task 'no.such.task'"}}]
    done = project.liteq("control", "rate_limit", "no.such.task", "1/s", project.location)
    assert done.returncode == 1 and "unknown task" in done.stdout
    done = project.liteq("control", "rate_limit", tasks.add.name, "fast", project.location)
    assert done.returncode == 2 and "rate limit must be" in done.stderr
    assert "Traceback" not in done.stderr
    done = project.liteq("control", "add_consumer", project.location)
    assert done.returncode == 2 and "usage: liteq control add_consumer QUEUE" in done.stderr


def test_shutdown_is_warm_and_honours_destination(project: Project) -> None:
    tasks = project.module(SHARED)
    first = project.worker("-A", tasks.__name__, "-n", "w1@%h", database="")
    second = project.worker("-A", tasks.__name__, "-n", "w2@%h", database="")
    app = tasks.app
    assert sorted(next(iter(r)) for r in app.control.ping()) == [_node("w1"), _node("w2")]
    running = tasks.add.delay(1, 1)  # whoever runs it, it finishes
    app.control.shutdown(destination=[_node("w1")])
    assert first.process is not None and first.process.wait(20) == 0
    assert "shutdown complete (warm)" in first.output()
    assert running.get(timeout=15) == 2
    assert second.returncode is None  # not addressed: still running
    assert app.control.ping() == [{_node("w2"): {"ok": "pong"}}]
    done = project.liteq("control", "shutdown", project.location)
    assert done.returncode == 0, done.stderr
    assert second.process is not None and second.process.wait(20) == 0
    done = project.liteq("control", "ping", project.location, "-t", "0.3")
    assert done.returncode == 1 and "No nodes replied" in done.stderr


def test_shutdown_lets_a_running_task_finish(project: Project) -> None:
    tasks = project.module()
    worker = project.worker("-c", "1", pool="prefork")
    running = tasks.sleep.delay(1)
    wait_for(lambda: running.state == "RECEIVED", 15)
    tasks.app.control.shutdown()
    assert worker.process is not None and worker.process.wait(20) == 0
    assert running.get(timeout=5) == 1


def test_time_limit_applies_to_messages_without_limits(project: Project) -> None:
    tasks = project.module()
    project.worker("-c", "1", pool="prefork")
    app = tasks.app
    replies = app.control.time_limit(tasks.sleep.name, hard=1, reply=True)
    assert replies == [{_node(): {"ok": "time limits set successfully"}}]
    res = tasks.sleep.delay(30)  # the worker kills its pool process after 1 s
    with pytest.raises(liteq.TimeLimitExceeded):
        res.get(timeout=20)
    done = project.liteq("control", "time_limit", tasks.sleep.name, "0.5", project.location)
    assert done.returncode == 0 and "time limits set successfully" in done.stdout
    res = tasks.sleep.delay(30)  # now a soft limit, raised inside the task
    with pytest.raises(liteq.SoftTimeLimitExceeded):
        res.get(timeout=20)
    done = project.liteq("control", "time_limit", tasks.sleep.name, "soon", project.location)
    assert done.returncode == 2 and "time limits are seconds" in done.stderr
