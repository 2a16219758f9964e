"""A worker inside the application: ``app.Worker(...)`` / ``app.run_worker(...)``.

Desktop, edge and web applications run their own worker in a background thread (or a
prefork pool started from a running application). They start and stop it, quit with
tasks queued and find them on the next start, share one store between two
applications, and recover the task a crashed application was running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from liteq import ImproperlyConfigured, LiteQ
from liteq.contrib.testing.worker import start_worker
from liteq.testing import WorkerProcess, wait_for
from tests.conftest import Project, _pythonpath

TASKS = """
import os
import threading
import time
from pathlib import Path

from liteq import LiteQ

app = LiteQ(__name__, broker="@BROKER@",
            broker_transport_options={"visibility_timeout": 2},
            worker_heartbeat_interval=0.3)
LOG = Path(r"@ROOT@") / "runs.log"


def log(line):
    with LOG.open("a") as handle:
        handle.write(line + "\\n")


@app.task
def add(x, y):
    return x + y


@app.task(bind=True)
def where(self):
    return {"pid": os.getpid(), "thread": threading.current_thread().name,
            "hostname": self.request.hostname}


@app.task(bind=True)
def plain(self, name, seconds):
    log(f"start {name} {self.request.hostname}")
    time.sleep(seconds)
    return name


@app.task(bind=True, acks_late=True)
def step(self, name, seconds):
    log(f"start {name} {self.request.hostname}")
    time.sleep(seconds)
    log(f"end {name} {self.request.hostname}")
    return name
"""

#: A desktop-style application: starts its worker, runs until SIGTERM, quits warm.
HOST = """
import signal
import subprocess
import sys
import threading

from @MODULE@ import app

quit_requested = threading.Event()
signal.signal(signal.SIGTERM, lambda *args: quit_requested.set())

if __name__ == "__main__":
    pool, concurrency, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    worker = app.Worker(pool=pool, concurrency=concurrency, hostname=name,
                        prefetch_multiplier=1)
    worker.start()
    print("host ready.", flush=True)
    while not quit_requested.wait(0.1):
        pass
    worker.stop(timeout=60)
    print("host quit.", flush=True)
"""


def _tasks(project: Project) -> object:
    source = TASKS.replace("@ROOT@", str(project.root))
    return project.module(source, name=f"embedded_{project.transport}_{os.getpid()}")


def _runs(project: Project) -> list[str]:
    path = project.root / "runs.log"
    return path.read_text().splitlines() if path.exists() else []


def _host(project: Project, module: str, pool: str = "threads", concurrency: int = 2,
          name: str = "host1@%h") -> WorkerProcess:
    (project.root / "host.py").write_text(HOST.replace("@MODULE@", module))
    log = project.root / f"{name.partition('@')[0]}.log"
    host = WorkerProcess([pool, str(concurrency), name], cwd=project.root, log=str(log),
                         env={"PYTHONPATH": _pythonpath()},
                         command=[sys.executable, "host.py"])
    project.workers.append(host)
    host.start()
    host.wait_for_output("host ready.", timeout=60)
    return host


def test_start_returns_at_once_and_stop_is_warm(project: Project) -> None:
    tasks = _tasks(project)
    app = tasks.app  # type: ignore[attr-defined]
    worker = app.Worker(pool="threads", concurrency=4, queues=["celery"])
    assert not worker.is_alive()
    begun = time.monotonic()
    assert worker.start() is worker
    assert time.monotonic() - begun < 10 and worker.is_alive()
    try:
        result = tasks.where.delay()  # type: ignore[attr-defined]
        info = result.get(timeout=10)
        assert info["pid"] == os.getpid()
        assert info["thread"] != threading.current_thread().name
        assert info["hostname"] == worker.hostname
        assert [r.get(timeout=10) for r in
                [tasks.add.delay(i, i) for i in range(20)]] == [  # type: ignore[attr-defined]
            2 * i for i in range(20)]
    finally:
        worker.stop(timeout=10)
    assert not worker.is_alive()
    later = tasks.add.delay(1, 1)  # type: ignore[attr-defined]
    time.sleep(0.5)  # (a stopped worker must not take it: give it the chance)
    assert later.state == "PENDING"
    with app.run_worker(pool="solo") as again:
        assert again.is_alive() and later.get(timeout=10) == 2
    assert not again.is_alive()


def test_bad_options_are_refused(project: Project) -> None:
    app = _tasks(project).app  # type: ignore[attr-defined]
    with pytest.raises(ImproperlyConfigured, match="gevent"):
        app.Worker(pool="gevent")
    with pytest.raises(ImproperlyConfigured, match="colour"):
        app.Worker(colour="blue")
    orphan = LiteQ("orphan", broker=project.broker_url)
    with pytest.raises(ImproperlyConfigured, match="no module holds this app"):
        orphan.Worker(pool="prefork")


def test_warm_stop_finishes_running_and_returns_prefetched(project: Project) -> None:
    tasks = _tasks(project)
    app = tasks.app  # type: ignore[attr-defined]
    worker = app.Worker(pool="threads", concurrency=1, prefetch_multiplier=4).start()
    results = [tasks.step.delay(f"t{i}", 1.0) for i in range(4)]  # type: ignore[attr-defined]
    wait_for(lambda: "start t0 " + worker.hostname in _runs(project), 15)
    worker.stop(timeout=30)
    assert results[0].get(timeout=1) == "t0"  # the running one finished
    assert [r.state for r in results[1:]] == ["PENDING"] * 3  # the rest went back
    assert not any(app.broker.is_leased(r.id) for r in results[1:])
    with app.run_worker(pool="threads", concurrency=3):
        assert [r.get(timeout=20) for r in results[1:]] == ["t1", "t2", "t3"]
    starts = [line.split()[1] for line in _runs(project) if line.startswith("start")]
    assert sorted(starts) == ["t0", "t1", "t2", "t3"]  # each ran exactly once


def test_application_quits_with_tasks_queued_and_finds_them_next_start(
        project: Project) -> None:
    tasks = _tasks(project)
    module = tasks.__name__
    host = _host(project, module, concurrency=1, name="desk@%h")
    results = [tasks.step.delay(f"q{i}", 0.3) for i in range(6)]  # type: ignore[attr-defined]
    wait_for(lambda: any(line.startswith("start") for line in _runs(project)), 15)
    assert host.stop(timeout=30) == 0 and "host quit." in host.output()
    done = [r for r in results if r.state == "SUCCESS"]
    assert 1 <= len(done) < 6
    assert all(r.state == "PENDING" for r in results if r not in done)
    _host(project, module, concurrency=2, name="desk2@%h")
    assert [r.get(timeout=30) for r in results] == [f"q{i}" for i in range(6)]
    starts = sorted(line.split()[1] for line in _runs(project) if line.startswith("start"))
    assert starts == [f"q{i}" for i in range(6)]  # none lost, none run twice


def test_two_applications_on_one_store_share_the_work(project: Project) -> None:
    tasks = _tasks(project)
    module = tasks.__name__
    _host(project, module, concurrency=2, name="left@%h")
    _host(project, module, concurrency=2, name="right@%h")
    results = [tasks.step.delay(f"s{i}", 0.2) for i in range(12)]  # type: ignore[attr-defined]
    assert [r.get(timeout=60) for r in results] == [f"s{i}" for i in range(12)]
    starts = [line.split() for line in _runs(project) if line.startswith("start")]
    assert sorted(name for _, name, _ in starts) == sorted(f"s{i}" for i in range(12))
    hosts = {host.partition("@")[0] for _, _, host in starts}
    assert hosts == {"left", "right"}


def test_crashed_application_recovers_its_task_on_next_start(project: Project) -> None:
    tasks = _tasks(project)
    module = tasks.__name__
    host = _host(project, module, concurrency=1, name="crash@%h")
    running = tasks.step.delay("long", 1.0)  # type: ignore[attr-defined]
    queued = tasks.step.delay("queued", 0.1)  # type: ignore[attr-defined]
    wait_for(lambda: any(line.startswith("start long") for line in _runs(project)), 15)
    os.kill(host.pid, signal.SIGKILL)  # the application crashes (power cut, kill -9)
    assert host.process is not None and host.process.wait(10) == -signal.SIGKILL
    assert running.state != "SUCCESS"
    _host(project, module, concurrency=1, name="restart@%h")
    assert running.get(timeout=60) == "long"  # acks_late: run again after its lease
    assert queued.get(timeout=60) == "queued"
    assert any(line.startswith("end long restart@") for line in _runs(project))


def test_prefork_pool_started_from_a_running_application(project: Project) -> None:
    tasks = _tasks(project)
    host = _host(project, tasks.__name__, pool="prefork", concurrency=2, name="forks@%h")
    infos = [r.get(timeout=60) for r in
             [tasks.where.delay() for _ in range(6)]]  # type: ignore[attr-defined]
    pids = {info["pid"] for info in infos}
    assert host.pid not in pids and os.getpid() not in pids  # child processes ran them
    assert all(info["thread"] == "MainThread" for info in infos)
    result = tasks.step.delay("last", 1.0)  # type: ignore[attr-defined]
    wait_for(lambda: any(line.startswith("start last") for line in _runs(project)), 15)
    assert host.stop(timeout=60) == 0
    assert result.get(timeout=1) == "last"  # warm: the running task finished
    assert "Traceback" not in host.output(), host.output()


SCRIPT = """
import os
from liteq import LiteQ

app = LiteQ(@MAIN@, broker="@BROKER@")


@app.task
def pid():
    return os.getpid()


if __name__ == "__main__":
    with app.run_worker(pool="prefork", concurrency=2):
        pids = {pid.delay().get(timeout=30) for _ in range(4)}
    print("ran in children:", os.getpid() not in pids)
"""


@pytest.mark.parametrize("main", ['"script"', "None"])
def test_prefork_from_the_script_that_defines_the_app(project: Project, main: str) -> None:
    script = SCRIPT.replace("@MAIN@", main).replace("@BROKER@", project.broker_url)
    (project.root / "script.py").write_text(script)
    done = subprocess.run([sys.executable, "script.py"], cwd=project.root, capture_output=True,
                          text=True, timeout=90, env={**os.environ, "PYTHONPATH": _pythonpath()})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ran in children: True"


FORGETFUL = """
import sys
import time
from pathlib import Path

from @MODULE@ import app, plain

worker = app.Worker(pool="threads", concurrency=1, prefetch_multiplier=4).start()
results = [plain.delay(f"p{i}", 0.5) for i in range(4)]
Path("ids.txt").write_text("\\n".join(r.id for r in results))
while not Path("runs.log").exists():
    time.sleep(0.01)
sys.exit(0)  # the application ends without calling worker.stop()
"""


def test_an_application_that_forgets_stop_still_stops_warm(project: Project) -> None:
    tasks = _tasks(project)
    (project.root / "forgetful.py").write_text(FORGETFUL.replace("@MODULE@", tasks.__name__))
    done = subprocess.run([sys.executable, "forgetful.py"], cwd=project.root,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": _pythonpath()})
    assert done.returncode == 0, done.stderr
    app = tasks.app  # type: ignore[attr-defined]
    results = [app.AsyncResult(i) for i in (project.root / "ids.txt").read_text().split()]
    assert results[0].get(timeout=1) == "p0"  # finished at exit
    assert [r.state for r in results[1:]] == ["PENDING"] * 3  # returned, not failed
    with app.run_worker(pool="threads", concurrency=3):
        assert [r.get(timeout=20) for r in results[1:]] == ["p1", "p2", "p3"]


def test_celery_start_worker_is_the_same_worker(project: Project) -> None:
    tasks = _tasks(project)
    with start_worker(tasks.app, perform_ping_check=False) as worker:  # type: ignore[attr-defined]
        assert tasks.add.delay(2, 3).get(timeout=10) == 5  # type: ignore[attr-defined]
        assert worker.is_alive()
    assert not worker.is_alive()
