"""``/metrics`` of the console and ``liteq metrics``, read with Prometheus's own parser,
on SQLite and on Redis."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from liteq.testing import wait_for

TASKS = '''
import time
from liteq import LiteQ

app = LiteQ(__name__, broker="@BROKER@")


@app.task
def add(x, y):
    return x + y


@app.task
def fail():
    raise ValueError("no")


@app.task
def nap(seconds):
    time.sleep(seconds)
    return seconds
'''


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def transport_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at ``url``, by name and labels, parsed by prometheus_client."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_liteq_metrics_alone_counts_what_the_store_holds(project: Any,
                                                         start_console: Any) -> None:
    tasks = project.module(TASKS)
    name = tasks.__name__
    project.worker()
    assert [tasks.add.delay(i, i).get(timeout=15) for i in range(2)] == [0, 2]
    with pytest.raises(ValueError):
        tasks.fail.delay().get(timeout=15)
    ignored = tasks.add.apply_async((2, 2), ignore_result=True)
    later = tasks.add.apply_async((1, 1), countdown=1)
    tasks.app.control.revoke(later.id)  # counted when the worker drops it, at its eta
    for _ in range(3):
        tasks.add.apply_async((1, 1), queue="nobody")
    exporter = start_console(project.root, project.location, command="metrics")
    url = f"{exporter.url}/metrics"

    revoked = ("liteq_tasks_total", (("state", "revoked"), ("task", f"{name}.add")))
    wait_for(lambda: scrape(url).get(revoked) == 1, timeout=15, interval=0.2)
    samples = scrape(url)
    # the ignore_result task is counted though no result is stored
    assert tasks.app.backend.get_result(ignored.id) is None
    assert samples[("liteq_tasks_total", (("state", "succeeded"), ("task", f"{name}.add")))] == 3
    assert samples[("liteq_tasks_total", (("state", "failed"), ("task", f"{name}.fail")))] == 1
    assert samples[("liteq_queue_messages", (("queue", "nobody"), ("state", "ready")))] == 3
    assert samples[("liteq_queue_oldest_ready_seconds", (("queue", "nobody"),))] >= 0
    assert samples[("liteq_workers_alive", ())] == 1
    assert samples[("liteq_leases_taken_over_total", ())] == 0
    if project.transport == "sqlite":
        assert samples[("liteq_sqlite_wal_bytes", ())] > 0
        assert samples[("liteq_sqlite_busy_retries_total", ())] >= 0
    else:
        assert ("liteq_sqlite_busy_retries_total", ()) not in samples

    # run times, as the worker measured them
    assert tasks.nap.delay(1.0).get(timeout=15) == 1.0
    samples = scrape(url)
    assert samples[("liteq_task_runtime_seconds_count", (("task", f"{name}.nap"),))] == 1
    assert samples[("liteq_task_runtime_seconds_sum", (("task", f"{name}.nap"),))] >= 1.0
    assert samples[("liteq_task_runtime_seconds_bucket",
                    (("le", "0.5"), ("task", f"{name}.nap")))] == 0
    assert samples[("liteq_task_runtime_seconds_bucket",
                    (("le", "+Inf"), ("task", f"{name}.nap")))] == 1


@pytest.mark.parametrize("transport_kind", ["sqlite"])
def test_the_console_serves_the_same_metrics(project: Any, start_console: Any) -> None:
    tasks = project.module(TASKS)
    tasks.app.broker.open()
    tasks.add.delay(1, 2)
    console = start_console(project.root, project.location, "--read-only")
    samples = scrape(f"{console.url}/metrics")
    assert samples[("liteq_queue_messages", (("queue", "celery"), ("state", "ready")))] == 1
