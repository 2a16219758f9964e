"""Redis itself fails: killed and restarted mid-run, unreachable, or given a wrong
password. (Workers killed or stopped mid-task, and a late ack after a takeover being
refused, run on Redis too: test_crash_recovery.py is parametrized over transports.)"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import liteq
from liteq.testing import wait_for
from tests.conftest import Project, _pythonpath
from tests.redis_fixtures import RedisServer
from tests.reliability.conftest import reliability_module, starts
from tests.transports.support import envelope

pytestmark = [pytest.mark.redis, pytest.mark.sqlite_only("starts its own redis-server")]

#: Sends ``late`` tasks until told to stop; records each id whose delay() returned.
PRODUCER = """
import os, sys
sys.path.insert(0, {root!r})
from {module} import late
log, acked, stop = sys.argv[1], sys.argv[2], sys.argv[3]
with open(acked, "a", buffering=1) as out, open(acked + ".errors", "a", buffering=1) as err:
    while not os.path.exists(stop):
        try:
            out.write(late.delay(log, 0.002).id + "\\n")
        except Exception as exc:  # counted: a send that failed was not acknowledged
            err.write(f"{{type(exc).__name__}}: {{exc}}\\n")
"""

#: Worker log lines that record a lease loss of a task (the id is the first group).
LEASE_LOSS = re.compile(
    r"task (\S+): its worker stopped renewing the lease; queued again"
    r"|task (\S+) lost its worker process: queued again"
    r"|lease of \S+\[(\S+)\] was lost"
)


@pytest.fixture
def aof_server(tmp_path: Path):
    server = RedisServer(tmp_path / "redis", appendonly=True, password="aof-pw").start()
    yield server
    server.stop()


def _lease_losses(project: Project) -> tuple[Counter[str], Counter[str]]:
    """Lease losses the workers logged: by task id, and by kind (reaped, process lost,
    or a settlement refused: the last also when Redis died after applying a settlement
    but before replying, so the retry found the lease already gone)."""
    losses: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for worker in project.workers:
        for match in LEASE_LOSS.finditer(worker.output()):
            index, task_id = next((i, g) for i, g in enumerate(match.groups()) if g)
            losses[task_id] += 1
            kinds[("reaped", "process lost", "settle refused")[index]] += 1
    return losses, kinds


def test_redis_killed_and_restarted_loses_no_acknowledged_task(tmp_path: Path,
                                                               aof_server: RedisServer) -> None:
    """SIGKILL redis-server (AOF, appendfsync always) every 1.5-3 s while two producers
    send and two workers run: every send that returned gets its result, and every
    extra run of a task is explained by a recorded lease loss."""
    project = Project(tmp_path / "project", "redis", aof_server.url(0))
    (tmp_path / "project").mkdir()
    try:
        tasks = reliability_module(project, lease=3.0)
        log, stop = project.root / "log", project.root / "stop"
        for name in ("w1@%h", "w2@%h"):
            project.worker("-c", "2", "-A", tasks.__name__, "-n", name, pool="prefork",
                           database="")
        script = project.root / "produce.py"
        script.write_text(textwrap.dedent(PRODUCER).format(root=str(project.root),
                                                           module=tasks.__name__))
        acked = [project.root / f"acked-{n}" for n in range(2)]
        producers = [subprocess.Popen([sys.executable, str(script), str(log), str(path),
                                       str(stop)], cwd=project.root,
                                      env={"PYTHONPATH": _pythonpath()},
                                      stderr=subprocess.PIPE, text=True)
                     for path in acked]
        rng = random.Random(6)
        kills = 0
        try:
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(1.5, 3.0))
                aof_server.kill()  # by pid
                kills += 1
                time.sleep(rng.uniform(0.1, 0.6))
                aof_server.start()
        finally:
            stop.touch()
            for producer in producers:
                _, err = producer.communicate(timeout=60)
                assert producer.returncode == 0, err
        sent = [line for path in acked for line in path.read_text().split()]
        failed_sends = sum(len(Path(f"{path}.errors").read_text().splitlines())
                           for path in acked)
        backend = tasks.app.backend

        def unfinished() -> list[str]:
            return [task_id for task_id in sent if backend.get_result(task_id) is None]

        missing = sent
        deadline = time.monotonic() + 90
        while missing and time.monotonic() < deadline:
            missing = unfinished() if missing is sent else \
                [t for t in missing if backend.get_result(t) is None]
            time.sleep(0.5)
        states = Counter(backend.get_result(task_id).state for task_id in sent
                         if backend.get_result(task_id) is not None)
        runs = starts(log)
        losses, kinds = _lease_losses(project)
        duplicated = {task_id: count - 1 for task_id, count in runs.items() if count > 1}
        unexplained = {task_id: extra for task_id, extra in duplicated.items()
                       if extra > losses[task_id]}
        print(f"\nredis kill/restart: {kills} kills, {len(sent)} acknowledged sends, "
              f"{failed_sends} failed sends, lost {len(missing)}, results {dict(states)}, "
              f"duplicate runs {sum(duplicated.values())}, lease losses {dict(kinds)}, "
              f"unexplained duplicates {len(unexplained)}")
        assert kills >= 4 and len(sent) > 100
        assert missing == []  # 0 acknowledged enqueues lost
        assert set(states) == {"SUCCESS"}
        assert unexplained == {}  # every extra run follows a recorded lease loss
        assert tasks.app.broker.depth() == {}
    finally:
        project.close()


def test_a_short_outage_is_ridden_out_and_a_long_one_named(tmp_path: Path,
                                                           aof_server: RedisServer) -> None:
    app = liteq.LiteQ("outage", broker=aof_server.url(0),
                      broker_transport_options={"retry_policy": {"timeout": 2.0}})
    app.broker.publish([envelope("before")])
    aof_server.kill()
    threading.Timer(0.5, aof_server.start).start()
    app.broker.publish([envelope("during")])  # retried until Redis is back
    assert app.broker.depth()["celery"].ready == 2
    aof_server.kill()
    started = time.monotonic()
    with pytest.raises(liteq.OperationalError) as caught:
        app.broker.publish([envelope("never")])
    assert 1.5 < time.monotonic() - started < 6
    message = str(caught.value)
    assert f"cannot reach Redis at redis://127.0.0.1:{aof_server.port}/0" in message
    assert "aof-pw" not in message
    aof_server.start()
    assert app.broker.depth()["celery"].ready == 2  # nothing half-done, nothing lost


def test_a_wrong_password_is_one_line_from_the_command_line(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", password="right-pw").start()
    try:
        for command in ("worker", "status", "purge"):
            args = [command, server.url(0, password="WRONG-pw")]
            if command == "worker":
                args += ["-P", "solo"]
            elif command == "purge":
                args += ["-f"]
            done = subprocess.run([sys.executable, "-m", "liteq", *args], capture_output=True,
                                  text=True, timeout=60, cwd=tmp_path,
                                  env={"PYTHONPATH": _pythonpath()})
            assert done.returncode == 1, (command, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1, (command, done.stderr)
            assert "refused liteq's credentials" in lines[0]
            assert f"redis://127.0.0.1:{server.port}/0" in lines[0]
            assert "WRONG-pw" not in done.stderr + done.stdout
    finally:
        server.stop()


def test_workers_keep_working_across_a_redis_restart(tmp_path: Path,
                                                     aof_server: RedisServer) -> None:
    project = Project(tmp_path / "project", "redis", aof_server.url(0))
    (tmp_path / "project").mkdir()
    try:
        tasks = reliability_module(project, lease=3.0)
        log = project.root / "log"
        project.worker("-c", "2", "-A", tasks.__name__, pool="prefork", database="")
        assert tasks.noop.delay(str(log), 1).get(timeout=20) == 1
        aof_server.kill()
        aof_server.start()
        # an idle worker hears about new tasks again (its subscription came back)
        res = tasks.noop.delay(str(log), 2)
        started = time.monotonic()
        assert res.get(timeout=20) == 2
        assert time.monotonic() - started < 5
        wait_for(lambda: len(tasks.app.broker.workers()) == 1, 10)
    finally:
        project.close()
