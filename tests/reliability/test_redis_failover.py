"""A Sentinel failover during a run: producers and workers follow the master to its
replica, and every send that returned ends as a result. (Contract tests run on
Sentinel and Cluster too: tests/transports.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from liteq.testing import wait_for
from tests.conftest import Project, _pythonpath
from tests.redis_fixtures import SentinelSet
from tests.reliability.conftest import RELIABILITY_TASKS, starts

pytestmark = [pytest.mark.redis, pytest.mark.sqlite_only("starts its own sentinels")]

#: Sends ``late`` tasks (a few hundred a second, so one worker keeps up) until told to
#: stop; records each id whose delay() returned.
PRODUCER = """
import os, sys, time
sys.path.insert(0, {root!r})
from {module} import late
log, acked, stop = sys.argv[1], sys.argv[2], sys.argv[3]
with open(acked, "a", buffering=1) as out, open(acked + ".errors", "a", buffering=1) as err:
    while not os.path.exists(stop):
        try:
            out.write(late.delay(log, 0.001).id + "\\n")
        except Exception as exc:  # counted: a send that failed was not acknowledged
            err.write(f"{{type(exc).__name__}}: {{exc}}\\n")
        time.sleep(0.003)
"""


def sentinel_module(project: Project, servers: SentinelSet, lease: float = 3.0):  # type: ignore[no-untyped-def]
    options = {**servers.options(), "visibility_timeout": lease}
    source = RELIABILITY_TASKS.replace(
        'broker_transport_options={"visibility_timeout": @LEASE@}',
        f"broker_transport_options={options!r}")
    return project.module(source)


@pytest.fixture
def sentinels(tmp_path: Path):  # type: ignore[no-untyped-def]
    servers = SentinelSet(tmp_path / "servers", password="master-pw",
                          sentinel_password="sentinel-pw").start()
    yield servers
    servers.stop()


def test_a_failover_during_a_run_loses_no_acknowledged_task(tmp_path: Path,
                                                           sentinels: SentinelSet) -> None:
    """SENTINEL FAILOVER while a producer sends and a worker runs: the worker goes on
    with the new master, and every send that returned gets its result."""
    project = Project(tmp_path / "project", "redis", sentinels.url(0))
    (tmp_path / "project").mkdir()
    try:
        tasks = sentinel_module(project, sentinels)
        log, stop = project.root / "log", project.root / "stop"
        project.worker("-c", "2", "-A", tasks.__name__, pool="prefork", database="")
        script = project.root / "produce.py"
        script.write_text(textwrap.dedent(PRODUCER).format(root=str(project.root),
                                                           module=tasks.__name__))
        acked = project.root / "acked"
        producer = subprocess.Popen([sys.executable, str(script), str(log), str(acked),
                                     str(stop)], cwd=project.root,
                                    env={"PYTHONPATH": _pythonpath()},
                                    stderr=subprocess.PIPE, text=True)
        old_master = sentinels.master_port()
        try:
            wait_for(lambda: acked.exists() and len(acked.read_text().split()) > 200, 30)
            with sentinels.sentinel() as sentinel:
                sentinel.execute_command("SENTINEL", "FAILOVER", SentinelSet.MASTER)
            new_master = sentinels.replica.port
            sentinels.wait_settled(new_master, timeout=30)
            before = len(acked.read_text().split())
            wait_for(lambda: len(acked.read_text().split()) > before + 200, 30)
        finally:
            stop.touch()
            _, err = producer.communicate(timeout=60)
            assert producer.returncode == 0, err
        sent = acked.read_text().split()
        failed_sends = len(Path(f"{acked}.errors").read_text().splitlines())
        backend = tasks.app.backend
        missing = sent
        deadline = time.monotonic() + 60
        while missing and time.monotonic() < deadline:
            missing = [task_id for task_id in missing if backend.get_result(task_id) is None]
            time.sleep(0.2)
        states = Counter(backend.get_result(task_id).state for task_id in sent
                         if backend.get_result(task_id) is not None)
        print(f"\nsentinel failover {old_master} -> {new_master}: {len(sent)} acknowledged "
              f"sends, {failed_sends} failed sends, lost {len(missing)}, results "
              f"{dict(states)}, runs {sum(starts(log).values())}")
        assert old_master != new_master
        assert missing == []  # nothing acknowledged was lost
        assert set(states) == {"SUCCESS"}
        wait_for(lambda: tasks.app.broker.depth() == {}, 30)
    finally:
        project.close()
