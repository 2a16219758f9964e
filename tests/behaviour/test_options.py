"""apply_async options against a real worker: countdown, eta, expires, priority, queues."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

import liteq
from liteq.testing import wait_for
from liteq.transports.base import QueueDepth
from tests.conftest import Project


def test_countdown_waits_in_the_database_not_in_the_worker(project: Project) -> None:
    tasks = project.module()
    project.worker()
    sent = time.time()
    res = tasks.add.apply_async((2, 3), countdown=1.5)
    # The worker runs, but the message stays scheduled in storage until it is due.
    assert tasks.app.broker.depth() == {"celery": QueueDepth(scheduled=1)}
    assert res.state == "PENDING"
    assert res.get(timeout=15) == 5
    assert res.date_done.timestamp() - sent >= 1.4


def test_eta_with_aware_and_naive_datetimes(project: Project) -> None:
    tasks = project.module()
    project.worker()
    aware = tasks.add.apply_async((1, 1), eta=datetime.now(timezone.utc) + timedelta(seconds=1))
    naive = tasks.add.apply_async((2, 2), eta=datetime.now() + timedelta(seconds=1))
    started = time.time()
    assert aware.get(timeout=15) == 2
    assert naive.get(timeout=15) == 4
    assert time.time() - started >= 0.8


def test_countdown_survives_a_worker_restart(project: Project) -> None:
    tasks = project.module()
    worker = project.worker()
    res = tasks.add.apply_async((4, 5), countdown=2)
    worker.stop()
    project.worker()
    assert res.get(timeout=15) == 9


def test_expired_task_never_runs_and_ends_revoked(project: Project) -> None:
    tasks = project.module()
    marker = project.root / "ran.txt"
    res = tasks.record.apply_async((str(marker), "x"), expires=0.2)
    time.sleep(0.4)  # let it expire while no worker runs
    project.worker()
    with pytest.raises(liteq.TaskRevokedError, match="expired"):
        res.get(timeout=10)
    assert res.state == "REVOKED"
    assert not marker.exists()


def test_expires_as_datetime(project: Project) -> None:
    tasks = project.module()
    res = tasks.add.apply_async((1, 2), expires=datetime.now(timezone.utc) - timedelta(1))
    project.worker()
    assert res.get(timeout=10, propagate=False).__class__.__name__ == "TaskRevokedError"


def test_higher_priority_runs_first_then_arrival_order(project: Project) -> None:
    tasks = project.module()
    log = project.root / "order.txt"
    for value, priority in [("a", 0), ("b", 5), ("c", 9), ("d", 5), ("e", 0)]:
        tasks.record.apply_async((str(log), value), priority=priority)
    project.worker("--prefetch-multiplier", "1")
    wait_for(lambda: log.exists() and len(log.read_text().split()) == 5, 15)
    assert log.read_text().split() == ["c", "b", "d", "a", "e"]


def test_queue_option_and_worker_queue_selection(project: Project) -> None:
    tasks = project.module()
    low = tasks.add.apply_async((1, 1), queue="low")
    default = tasks.add.apply_async((2, 2))
    project.worker("-Q", "low")
    assert low.get(timeout=10) == 2
    time.sleep(0.3)
    assert default.state == "PENDING"  # nobody consumes "celery"
    project.worker("-Q", "celery,low")
    assert default.get(timeout=10) == 4


def test_task_level_options(project: Project) -> None:
    tasks = project.module(
        """
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@")

        @app.task(name="custom.name", queue="special", ignore_result=False, serializer="json")
        def named(x):
            return x * 2
        """
    )
    assert tasks.named.name == "custom.name"
    res = tasks.named.delay(21)
    assert tasks.app.broker.depth() == {"special": QueueDepth(ready=1)}
    project.worker("-Q", "special", "-A", tasks.__name__, database="")
    assert res.get(timeout=10) == 42


def test_send_task_by_name_and_task_id(project: Project) -> None:
    tasks = project.module()
    project.worker()
    res = tasks.app.send_task(f"{tasks.__name__}.add", args=(3, 4), task_id="my-id-1")
    assert res.id == "my-id-1"
    assert res.get(timeout=10) == 7
    assert tasks.app.AsyncResult("my-id-1").result == 7


def test_headers_and_request_context(project: Project) -> None:
    tasks = project.module()
    project.worker("-n", "w1@%h")
    res = tasks.whoami.apply_async(headers={"trace": "abc"})
    info = res.get(timeout=10)
    assert info["id"] == res.id
    assert info["retries"] == 0
    assert info["hostname"].startswith("w1@")
    assert info["root_id"] == res.id and info["parent_id"] is None


def test_rate_limit_is_global_across_workers(project: Project) -> None:
    tasks = project.module(
        """
        import time
        from liteq import LiteQ
        app = LiteQ(__name__, broker="@BROKER@")

        @app.task(rate_limit="4/s")
        def limited(path):
            with open(path, "a") as handle:
                handle.write(f"{time.time()}\\n")
        """
    )
    log = project.root / "limited.log"
    project.worker("-c", "2", pool="prefork")
    project.worker("-c", "2", pool="prefork")
    started = time.time()
    results = [tasks.limited.delay(str(log)) for _ in range(12)]
    for res in results:
        res.get(timeout=30)
    stamps = sorted(float(x) for x in log.read_text().split())
    assert len(stamps) == 12
    assert stamps[-1] - started >= 2.5  # 12 tokens at 4/s, starting with one
    for index, stamp in enumerate(stamps):  # no 1-second window holds more than 4 + 1
        assert sum(1 for other in stamps[index:] if other < stamp + 1.0) <= 5


def test_invalid_rate_limit_is_refused_at_definition(project: Project) -> None:
    with pytest.raises(liteq.ImproperlyConfigured, match="rate limit must be"):
        project.module(
            """
            from liteq import LiteQ
            app = LiteQ(__name__, broker="@BROKER@")

            @app.task(rate_limit="10 per minute")
            def limited():
                pass
            """
        )


def test_revoke_before_and_while_running(project: Project) -> None:
    tasks = project.module()
    marker = project.root / "revoked.txt"
    waiting = tasks.record.apply_async((str(marker), "x"), countdown=1)
    waiting.revoke()
    assert waiting.state == "REVOKED"  # at once: no worker holds it
    project.worker("-c", "1", pool="prefork")
    running = tasks.sleep.delay(30)
    wait_for(lambda: running.state == "RECEIVED", 15)
    done = project.liteq("inspect", "active", project.location, "--json")
    assert running.id in done.stdout
    time.sleep(1.5)  # the countdown passed: the worker claims the revoked one, skips it
    assert not marker.exists()
    assert waiting.state == "REVOKED"
    done = project.liteq("revoke", running.id, "-b", project.location, "--terminate")
    assert done.returncode == 0, done.stderr
    with pytest.raises(liteq.TaskRevokedError, match="terminated"):
        running.get(timeout=15)
    assert tasks.add.delay(1, 1).get(timeout=15) == 2  # the pool process was replaced
    done = project.liteq("inspect", "revoked", project.location)
    assert waiting.id in done.stdout and running.id in done.stdout
    done = project.liteq("inspect", "stats", project.location, "--json")
    assert '"max-concurrency": 1' in done.stdout
