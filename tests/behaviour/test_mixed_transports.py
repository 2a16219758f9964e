"""Results apart from the broker: a SQLite broker with a Redis result backend, and the
reverse. Task code does not change; only the two URLs do."""

from __future__ import annotations

import pytest

import liteq
from liteq.testing import wait_for
from tests.conftest import Project

MIXED_TASKS = """
import time
from liteq import LiteQ

app = LiteQ(__name__, broker="@BROKER_URL@", backend="@BACKEND_URL@",
            task_track_started=True)


@app.task
def add(x, y):
    return x + y


@app.task(bind=True)
def progress(self):
    self.update_state(state="PROGRESS", meta={"done": 1})
    time.sleep(1.0)
    return "finished"


@app.task
def fail():
    raise KeyError("missing")
"""


@pytest.mark.redis
@pytest.mark.sqlite_only("sets up both transports itself")
@pytest.mark.parametrize("broker", ["sqlite", "redis"])
def test_results_live_apart_from_the_broker(project: Project, redis_url: str,
                                            broker: str) -> None:
    sqlite_url = f"sqlite:///{project.db}"
    broker_url, backend_url = (sqlite_url, redis_url) if broker == "sqlite" else \
        (redis_url, sqlite_url)
    tasks = project.module(MIXED_TASKS.replace("@BROKER_URL@", broker_url)
                           .replace("@BACKEND_URL@", backend_url))
    app = tasks.app
    assert not app.results_with_broker
    assert type(app.backend).__name__ != type(app.broker).__name__
    project.worker("-A", tasks.__name__, database="")
    res = tasks.add.delay(2, 3)
    assert res.get(timeout=15) == 5
    assert app.backend.get_result(res.id).state == "SUCCESS"
    assert app.broker.get_result(res.id) is None  # not in the broker's store
    slow = tasks.progress.delay()
    wait_for(lambda: slow.state == "PROGRESS", 15)
    assert slow.info == {"done": 1}
    assert slow.get(timeout=15) == "finished"
    with pytest.raises(KeyError):
        tasks.fail.delay().get(timeout=15)
    assert isinstance(tasks.fail.delay().get(timeout=15, propagate=False), KeyError)
    assert isinstance(liteq.AsyncResult(res.id, app=app).get(timeout=1), int)
