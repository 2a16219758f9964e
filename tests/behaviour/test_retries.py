"""Retries, backoff, hooks, annotations and signals, as Celery users write them."""

from __future__ import annotations

import sqlite3
import threading
import time
from itertools import pairwise

import pytest

import liteq
from liteq import LiteQ
from liteq.testing import wait_for
from liteq.transports.base import QueueDepth
from tests.conftest import Project

RETRY_TASKS = """
import os
import time
from liteq import LiteQ, MaxRetriesExceededError

app = LiteQ(__name__, broker="@BROKER@")
COUNTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "counts-" + __name__)


def bump(key):
    with open(COUNTS + key, "a") as handle:
        handle.write(f"{time.time()}\\n")


class Flaky(Exception):
    pass


@app.task(bind=True, max_retries=3, default_retry_delay=0.2)
def flaky(self, succeed_on):
    bump("flaky")
    if self.request.retries + 1 < succeed_on:
        raise self.retry(exc=Flaky(f"attempt {self.request.retries}"))
    return self.request.retries


@app.task(bind=True, max_retries=2)
def always_fails(self):
    bump("always")
    raise self.retry(exc=Flaky("nope"), countdown=0.1)


@app.task(bind=True, max_retries=1)
def retry_without_exc(self):
    raise self.retry(countdown=0.1)


@app.task(bind=True, max_retries=5)
def slow_retry(self):
    if self.request.retries == 0:
        raise self.retry(countdown=30)
    return "done"


@app.task(autoretry_for=(Flaky,), retry_backoff=0.1, retry_jitter=False,
          retry_kwargs={"max_retries": 3})
def auto(attempts_needed):
    bump("auto")
    with open(COUNTS + "auto") as handle:
        attempts = len(handle.readlines())
    if attempts < attempts_needed:
        raise Flaky(f"attempt {attempts}")
    return attempts
"""


def _times(project: Project, tasks, key: str) -> list[float]:  # type: ignore[no-untyped-def]
    path = project.root / f"counts-{tasks.__name__}{key}"
    return [float(x) for x in path.read_text().split()] if path.exists() else []


def test_retry_until_success_counts_retries(project: Project) -> None:
    tasks = project.module(RETRY_TASKS)
    project.worker()
    res = tasks.flaky.delay(3)
    assert res.get(timeout=20) == 2
    assert res.retries == 2
    stamps = _times(project, tasks, "flaky")
    assert len(stamps) == 3
    assert all(b - a >= 0.15 for a, b in pairwise(stamps))  # default_retry_delay


def test_past_max_retries_the_original_exception_stands(project: Project) -> None:
    tasks = project.module(RETRY_TASKS)
    project.worker()
    res = tasks.always_fails.delay()
    with pytest.raises(tasks.Flaky, match="nope"):
        res.get(timeout=20)
    assert len(_times(project, tasks, "always")) == 3  # first run + 2 retries
    res = tasks.retry_without_exc.delay()
    with pytest.raises(liteq.MaxRetriesExceededError, match="Can't retry"):
        res.get(timeout=20)


def test_a_waiting_retry_is_a_message_in_storage(project: Project) -> None:
    tasks = project.module(RETRY_TASKS)
    worker = project.worker()
    res = tasks.slow_retry.delay()
    wait_for(lambda: res.state == "RETRY", 10)
    assert isinstance(res.result, liteq.Retry) and "Retry in 30s" in str(res.result)
    broker = tasks.app.broker
    assert broker.depth()["celery"] == QueueDepth(scheduled=1)
    assert broker.next_eta(["celery"]) > time.time() + 20
    worker.stop()  # not held by the worker: it survives a restart
    assert tasks.app.broker.depth()["celery"].scheduled == 1


def test_autoretry_with_backoff(project: Project) -> None:
    tasks = project.module(RETRY_TASKS)
    project.worker()
    assert tasks.auto.delay(3).get(timeout=30) == 3
    stamps = _times(project, tasks, "auto")
    gaps = [b - a for a, b in pairwise(stamps)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19  # 0.1 * 2**retries


def test_hooks_annotations_and_signal_order_eagerly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    events: list[str] = []

    def on_failure_everywhere(self, exc, task_id, args, kwargs, einfo):
        events.append(f"annotation on_failure {type(exc).__name__}")

    app = LiteQ("hooks", broker=str(tmp_path / "h.db"), task_always_eager=True,
                CELERY_ANNOTATIONS={"*": {"on_failure": on_failure_everywhere}})

    class Hooked(liteq.Task):
        def before_start(self, task_id, args, kwargs):
            events.append("before_start")

        def on_success(self, retval, task_id, args, kwargs):
            events.append(f"on_success {retval}")

        def on_retry(self, exc, task_id, args, kwargs, einfo):
            events.append("on_retry")

        def after_return(self, status, retval, task_id, args, kwargs, einfo):
            events.append(f"after_return {status}")

    @app.task(base=Hooked, bind=True, max_retries=1)
    def work(self, fail):
        if fail == "retry" and self.request.retries == 0:
            raise self.retry(countdown=0)
        if fail == "boom":
            raise KeyError("boom")
        return "ok"

    for name in ("task_prerun", "task_postrun", "task_success", "task_failure", "task_retry"):
        getattr(liteq.signals, name).connect(
            lambda sender=None, _n=name, **kw: events.append(_n), dispatch_uid=name)
    try:
        work.delay("no")
        assert events == ["task_prerun", "before_start", "on_success ok", "task_success",
                          "after_return SUCCESS", "task_postrun"]
        events.clear()
        work.delay("boom")
        assert events == ["task_prerun", "before_start", "annotation on_failure KeyError",
                          "task_failure", "after_return FAILURE", "task_postrun"]
        events.clear()
        assert work.delay("retry").get() == "ok"
        assert events[:6] == ["task_prerun", "before_start", "on_retry", "task_retry",
                              "after_return RETRY", "task_postrun"]
    finally:
        for name in ("task_prerun", "task_postrun", "task_success", "task_failure",
                     "task_retry"):
            getattr(liteq.signals, name).disconnect(dispatch_uid=name)


def test_rate_limit_annotation_reaches_the_task(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = LiteQ("ann", broker=str(tmp_path / "a.db"),
                task_annotations={"ann.add": {"rate_limit": "10/m"}})

    @app.task(name="ann.add")
    def add(x, y):
        return x + y

    app.build_message("ann.add", (1, 2), task=add)
    assert add.rate_limit == "10/m"


def test_publish_retry_waits_out_a_busy_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = LiteQ("pub", broker=str(tmp_path / "p.db"), sqlite_busy_timeout=0.1)

    @app.task
    def add(x, y):
        return x + y

    app.broker.open()
    blocker = sqlite3.connect(app.broker.location, isolation_level=None,
                              check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, lambda: blocker.execute("COMMIT")).start()
    policy = {"max_retries": 10, "interval_start": 0, "interval_step": 0.1,
              "interval_max": 0.2}
    res = add.apply_async((1, 2), retry=True, retry_policy=policy)
    assert app.broker.depth()["celery"].ready == 1 and res.id
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(liteq.OperationalError, match="stayed locked"):
        add.apply_async((1, 2), retry=True, retry_policy={"max_retries": 2,
                                                          "interval_step": 0.05})
    with pytest.raises(liteq.OperationalError):
        add.apply_async((1, 2), retry=False)
    blocker.execute("ROLLBACK")
    assert app.broker.depth()["celery"].ready == 1  # the failed sends left nothing


def test_seed_retry_policy_with_kombu_style_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Seed 003: retry_policy={'max_retries': 3, 'retry_errors': (TimeoutError,)}."""
    app = LiteQ("pub2", broker=str(tmp_path / "p.db"), sqlite_busy_timeout=0.05)

    @app.task
    def add(x, y):
        return x + y

    app.broker.open()
    blocker = sqlite3.connect(app.broker.location, isolation_level=None,
                              check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: blocker.execute("COMMIT")).start()
    add.apply_async((2, 2), retry=True, retry_policy={
        "max_retries": 5, "interval_step": 0.1, "retry_errors": (TimeoutError,),
    })
    assert app.broker.depth()["celery"].ready == 1
