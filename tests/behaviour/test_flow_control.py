"""Flow control decided in the claim, across real worker processes: concurrency limits
per task and per key, rate limits, unique tasks, paused queues (issue 13)."""

from __future__ import annotations

import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import liteq
from liteq.testing import wait_for
from tests.conftest import Project

FLOW_TASKS = '''
import os, time
from liteq import LiteQ

app = LiteQ("flow", broker="@BROKER@")
app.conf.broker_transport_options = {"visibility_timeout": 3}


def _log(path, line):
    # one write with O_APPEND: lines of concurrent processes never interleave, and
    # the file's order is the order the events happened in
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)


@app.task(concurrency_limit=2, concurrency_key=lambda path, customer, i: customer)
def export(path, customer, i):
    _log(path, f"+ {customer}")
    time.sleep(0.15)
    _log(path, f"- {customer}")
    return i


@app.task(concurrency_limit=1)
def single(path, i):
    _log(path, "+ all")
    time.sleep(0.1)
    _log(path, "- all")
    return i


@app.task(concurrency_limit=1)
def hold(path, seconds):
    _log(path, "started")
    time.sleep(seconds)
    return seconds


@app.task(rate_limit="1/m", rate_limit_key=lambda customer: customer)
def call_api(customer):
    return customer


@app.task(unique=True)
def thumbnail(image):
    return image


@app.task
def plain(x):
    return x
'''


def _max_overlap(path: Path) -> dict[str, int]:
    """The most tasks of each key that were between their start and end at once."""
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    for line in path.read_text().splitlines():
        sign, key = line.split()
        running[key] = running.get(key, 0) + (1 if sign == "+" else -1)
        most[key] = max(most.get(key, 0), running[key])
    return most


def test_concurrency_limits_hold_across_workers(project: Project) -> None:
    tasks = project.module(FLOW_TASKS)
    log = project.root / "events.log"
    for _ in range(3):
        project.worker("-c", "4", pool="threads")
    results = [tasks.export.delay(str(log), customer, i)
               for i in range(8) for customer in ("a", "b")]
    results += [tasks.single.delay(str(log), i) for i in range(6)]
    for res in results:
        res.get(timeout=60)
    most = _max_overlap(log)
    assert most["a"] <= 2 and most["b"] <= 2, most
    assert most["all"] == 1, most
    depth = tasks.app.broker.depth()
    assert sum(d.total for d in depth.values()) == 0


def test_a_killed_workers_slot_comes_back_by_lease_expiry(project: Project) -> None:
    tasks = project.module(FLOW_TASKS)
    log = project.root / "events.log"
    # -A: the workers use the module's 3 s lease
    doomed = project.worker("-A", tasks.__name__, database="")
    lost = tasks.hold.delay(str(log), 60)
    wait_for(lambda: log.exists() and "started" in log.read_text(), timeout=30)
    waiting = tasks.hold.delay(str(log), 0)
    assert tasks.app.broker.depth()["celery"].blocked == 1  # the slot is taken
    doomed.signal(signal.SIGKILL)
    project.worker("-A", tasks.__name__, database="")
    # The dead worker's lease runs out; reaping frees its slot for the waiting task.
    assert waiting.get(timeout=60) == 0
    with pytest.raises(liteq.WorkerLostError):
        lost.get(timeout=30)


def test_rate_limited_tasks_wait_in_the_store_not_in_a_worker(project: Project) -> None:
    tasks = project.module(FLOW_TASKS)
    project.worker()
    first = [tasks.call_api.delay(customer) for customer in ("a", "b")]
    later = [tasks.call_api.delay(customer) for customer in ("a", "b")]
    # One token a minute per customer: one call each runs now, the others wait blocked
    # (never claimed only to be sent back).
    assert [res.get(timeout=30) for res in first] == ["a", "b"]
    depth = tasks.app.broker.depth()["celery"]
    assert depth.blocked == 2 and depth.ready == 0 and depth.leased == 0
    assert all(res.state == "PENDING" for res in later)


def test_racing_producers_get_one_unique_task(project: Project) -> None:
    tasks = project.module(FLOW_TASKS)
    code = f'''
import {tasks.__name__} as tasks
print(tasks.thumbnail.apply_async((42,), unique_key="thumb:42").id)
'''
    with ThreadPoolExecutor(6) as pool:
        done = list(pool.map(lambda _: project.run(code), range(6)))
    ids = {run.stdout.strip() for run in done}
    assert len(ids) == 1, [run.stderr for run in done]
    assert tasks.app.broker.depth()["celery"].ready == 1
    # unique=True: the key comes from the task's name and arguments
    first = tasks.thumbnail.delay(7)
    assert tasks.thumbnail.delay(7).id == first.id
    assert tasks.thumbnail.delay(8).id != first.id
    project.worker()
    assert first.get(timeout=30) == 7
    # finished: the key is free again
    wait_for(lambda: tasks.thumbnail.delay(7).id != first.id, timeout=10)


def test_a_paused_queue_is_not_drained_and_resumes(project: Project) -> None:
    tasks = project.module(FLOW_TASKS)
    assert tasks.app.control.pause_queue("videos") is True
    assert tasks.app.control.pause_queue("videos") is False
    waiting = [tasks.plain.apply_async((i,), queue="videos") for i in range(3)]
    worker = project.worker("-Q", "celery,videos")
    # The worker claims from its other queue, so it looked at both.
    assert tasks.plain.delay("other").get(timeout=30) == "other"
    assert tasks.app.broker.depth()["videos"].ready == 3
    listed = project.liteq("queues", project.location, "--json")
    assert json.loads(listed.stdout)["videos"]["paused"] is True, listed.stderr
    worker.stop()
    project.worker("-Q", "celery,videos")  # paused is stored: it holds across restarts
    assert tasks.plain.delay("again").get(timeout=30) == "again"
    assert tasks.app.broker.depth()["videos"].ready == 3
    done = project.liteq("queue", "resume", "videos", project.location)
    assert done.returncode == 0 and "Resumed queue videos" in done.stdout, done.stderr
    assert [res.get(timeout=30) for res in waiting] == [0, 1, 2]
    assert tasks.app.control.paused_queues() == []


def test_bad_flow_input_fails_at_send_and_stores_nothing(project: Project) -> None:
    tasks = project.module(FLOW_TASKS)
    app = tasks.app

    @app.task(concurrency_limit=1, concurrency_key=lambda x: x["customer"])
    def keyed(x):
        return x

    with pytest.raises(liteq.EncodeError, match=r"concurrency_key of task .*keyed raised KeyError"):
        keyed.delay({})
    with pytest.raises(liteq.ImproperlyConfigured, match="concurrency_limit must be a positive"):
        app.task(concurrency_limit=-1)(lambda: None)
    with pytest.raises(liteq.ImproperlyConfigured, match="unique_until must be"):
        tasks.plain.apply_async((1,), unique_key="k", unique_until="never")

    @app.task(unique=True, serializer="pickle")
    def pickled(x):
        return x

    with pytest.raises(liteq.EncodeError, match=r"unique=True: the arguments of task .*pickled"):
        pickled.delay(object())
    assert sum(d.total for d in app.broker.depth().values()) == 0
