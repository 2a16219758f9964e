"""``liteq doctor`` on a healthy store, a stale lease, a queue without workers, and a
Redis without AOF; on SQLite and on Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.redis_fixtures import RedisServer, require_redis_server

TASKS = '''
from liteq import LiteQ

app = LiteQ(__name__, broker="@BROKER@")


@app.task
def add(x, y):
    return x + y
'''


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def transport_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def doctor(project: Project) -> tuple[int, dict[str, dict[str, str]]]:
    """Run ``liteq doctor --json``: the exit code and the checks by name."""
    done = project.liteq("doctor", project.location, "--json", timeout=60)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, {check["name"]: check for check in json.loads(done.stdout)}


@pytest.fixture
def aof_project(tmp_path: Path, transport_kind: str) -> Iterator[Project]:
    """A project whose Redis (a server of its own) runs with appendonly yes."""
    if transport_kind == "sqlite":
        project = Project(tmp_path)
        yield project
        project.close()
        return
    require_redis_server()
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    project = Project(tmp_path, "redis", server.url(1))
    try:
        yield project
    finally:
        project.close()
        server.stop()


def test_a_healthy_store_passes_every_check(aof_project: Project) -> None:
    project = aof_project
    tasks = project.module(TASKS)
    project.worker()
    assert tasks.add.delay(2, 3).get(timeout=15) == 5
    code, checks = doctor(project)
    assert code == 0
    assert {name: c["status"] for name, c in checks.items() if c["status"] != "ok"} == {}
    expected = {"leases", "consumers", "scheduled", "results"}
    expected |= ({"filesystem", "journal mode", "synchronous", "WAL size", "schema version",
                  "file modes", "busy retries"} if project.transport == "sqlite" else
                 {"redis version", "redis AOF", "redis maxmemory-policy"})
    assert expected <= set(checks)
    plain = project.liteq("doctor", project.location)
    assert plain.returncode == 0
    assert all(line.startswith("ok ") for line in plain.stdout.splitlines())


def test_a_lease_whose_holder_stopped_heartbeating_fails(project: Project) -> None:
    tasks = project.module(TASKS)
    tasks.add.delay(1, 1)
    claimed = tasks.app.broker.claim(["celery"], 1, "ghost@gone:4242", 60.0)
    assert len(claimed) == 1
    code, checks = doctor(project)
    assert code == 1
    assert checks["leases"]["status"] == "fail"
    assert "ghost@gone:4242 (1)" in checks["leases"]["detail"]


def test_a_queue_with_ready_tasks_and_no_worker_warns(project: Project) -> None:
    tasks = project.module(TASKS)
    project.worker("-Q", "celery")
    for _ in range(2):
        tasks.add.apply_async((1, 1), queue="reports")
    code, checks = doctor(project)
    assert code == 0  # a warning, not a failure
    assert checks["consumers"]["status"] == "warn"
    assert "reports (2)" in checks["consumers"]["detail"]
    assert "celery" not in checks["consumers"]["detail"]


@pytest.mark.parametrize("transport_kind", [pytest.param("redis", marks=pytest.mark.redis)])
def test_a_redis_without_aof_warns(project: Project) -> None:
    project.module(TASKS).app.broker.open()
    code, checks = doctor(project)
    assert checks["redis AOF"]["status"] == "warn"
    assert "appendonly yes" in checks["redis AOF"]["detail"]
    assert checks["redis maxmemory-policy"]["status"] == "ok"
    assert code == 0


@pytest.mark.parametrize("transport_kind", ["sqlite"])
def test_doctor_on_a_missing_file_says_so_and_creates_nothing(project: Project) -> None:
    done = project.liteq("doctor", str(project.root / "typo.db"))
    assert done.returncode == 2
    assert "does not exist" in done.stderr
    assert not (project.root / "typo.db").exists()


@pytest.mark.parametrize("transport_kind", ["sqlite"])
def test_a_store_others_can_read_warns(project: Project) -> None:
    tasks = project.module(TASKS)
    tasks.app.broker.open()
    project.db.chmod(0o644)
    _, checks = doctor(project)
    assert checks["file modes"]["status"] == "warn"
    assert "644" in checks["file modes"]["detail"]


