"""Beat processes on one file: every tick fires once, while beats die and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from itertools import pairwise

import pytest

from liteq.testing import wait_for
from tests.conftest import Project, _pythonpath

BEAT_TASKS = """
import os
from liteq import LiteQ

app = LiteQ(__name__, broker="@BROKER@")
LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ticks-" + __name__)
app.conf.beat_schedule = {
    "every-second": {"task": __name__ + ".tick", "schedule": 1.0},
}


@app.task(bind=True)
def tick(self):
    with open(LOG, "a") as handle:
        handle.write(f"{self.request.headers['beat_tick']}\\n")
"""


def _ticks(path) -> list[float]:  # type: ignore[no-untyped-def]
    if not path.exists():
        return []
    return [float(line) for line in path.read_text().split()]


def _beat(project: Project, module: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "liteq", "-A", module, "beat"],
                            cwd=project.root, env={**os.environ, "PYTHONPATH": _pythonpath()},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_three_beats_killed_and_restarted_fire_each_tick_once(project: Project) -> None:
    tasks = project.module(BEAT_TASKS)
    log = project.root / f"ticks-{tasks.__name__}"
    project.worker("-A", tasks.__name__, database="")
    beats = [_beat(project, tasks.__name__) for _ in range(3)]
    try:
        deadline = time.monotonic() + 8
        victim = 0
        while time.monotonic() < deadline:
            time.sleep(1.3)
            os.kill(beats[victim].pid, signal.SIGKILL)  # by pid, never by name
            beats[victim].wait()
            beats[victim] = _beat(project, tasks.__name__)
            victim = (victim + 1) % 3
        wait_for(lambda: len(_ticks(log)) >= 6, 20)
    finally:
        for beat in beats:
            beat.send_signal(signal.SIGTERM)
        for beat in beats:
            beat.wait(20)
    ticks = _ticks(log)
    assert len(ticks) == len(set(ticks)), "a tick fired twice"
    ordered = sorted(ticks)
    gaps = [b - a for a, b in pairwise(ordered)]
    assert all(abs(gap - 1.0) < 1e-6 for gap in gaps), gaps  # no tick missed either
    (entry,) = tasks.app.broker.beat_entries()
    assert entry.total_run_count >= len(ticks)


def test_worker_with_embedded_beat_and_show(project: Project) -> None:
    tasks = project.module(BEAT_TASKS)
    log = project.root / f"ticks-{tasks.__name__}"
    project.worker("-A", tasks.__name__, "-B", database="", pool="prefork")
    wait_for(lambda: len(_ticks(log)) >= 2, 20)
    done = project.liteq("beat", project.broker_url, "--show")
    assert done.returncode == 0, done.stderr
    assert "every-second" in done.stdout and f"{tasks.__name__}.tick" in done.stdout
    assert "<freq: 1.00 second>" in done.stdout


def test_a_beat_started_after_downtime_fires_a_missed_entry_once(project: Project) -> None:
    tasks = project.module(BEAT_TASKS.replace('"schedule": 1.0', '"schedule": 2.0'))
    log = project.root / f"ticks-{tasks.__name__}"
    first = _beat(project, tasks.__name__)
    wait_for(lambda: tasks.app.broker.beat_entries(), 20)
    first.send_signal(signal.SIGTERM)
    first.wait(20)
    sent = tasks.app.broker.beat_entries()[0].total_run_count
    time.sleep(5)  # two ticks missed while no beat runs (a downtime, not a wait)
    second = _beat(project, tasks.__name__)
    try:
        wait_for(lambda: tasks.app.broker.beat_entries()[0].total_run_count > sent, 20)
        after_restart = tasks.app.broker.beat_entries()[0]
        assert after_restart.total_run_count == sent + 1  # once, not once per missed tick
        assert after_restart.next_run_at - after_restart.last_run_at == pytest.approx(2.0)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    assert not log.exists()  # no worker ran; the point here is what was sent
