"""Many producers and several workers on one file: nothing lost, nothing run twice."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from liteq.testing import wait_for
from tests.conftest import Project, _pythonpath
from tests.reliability.conftest import reliability_module, starts

PRODUCER = """
import sys
sys.path.insert(0, {root!r})
from {module} import noop
log, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ids = []
for i in range(first, first + count):
    ids.append(noop.delay(log, i).id)
with open(sys.argv[4], "w") as out:
    out.write("\\n".join(ids))
"""


class _Done:
    """Counts tasks with a SUCCESS result, asking only about those not yet seen done
    (through the transport, so it works on every one)."""

    def __init__(self, app, ids: list[str]) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.pending = list(ids)
        self.done = 0

    def __call__(self) -> int:
        backend = self.app.backend
        still = []
        misses = 0
        for index, task_id in enumerate(self.pending):
            record = backend.get_result(task_id)
            if record is not None and record.state == "SUCCESS":
                self.done += 1
                continue
            still.append(task_id)
            misses += 1
            if misses > 50:  # results come roughly in order: look again later
                still.extend(self.pending[index + 1:])
                break
        self.pending = still
        return self.done


def test_two_workers_share_2000_tasks_each_run_once(project: Project) -> None:
    tasks = reliability_module(project)
    log = project.root / "log"
    ids = [tasks.noop.delay(str(log), i).id for i in range(2000)]
    project.worker("-c", "2", "-A", tasks.__name__, "-n", "w1@%h", pool="prefork", database="")
    project.worker("-c", "2", "-A", tasks.__name__, "-n", "w2@%h", pool="prefork", database="")
    done = _Done(tasks.app, ids)
    wait_for(lambda: done() == 2000, 120, interval=0.2)
    counts = starts(log)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1
    workers = {pid for _, _, pid in (line.split() for line in log.read_text().splitlines())}
    assert len(workers) >= 2  # both shared the work


def test_eight_producers_and_two_workers(project: Project) -> None:
    tasks = reliability_module(project)
    log = project.root / "log"
    script = project.root / "produce.py"
    script.write_text(textwrap.dedent(PRODUCER).format(root=str(project.root),
                                                       module=tasks.__name__))
    project.worker("-c", "2", "-A", tasks.__name__, pool="prefork", database="")
    project.worker("-c", "2", "-A", tasks.__name__, pool="prefork", database="")
    producers = [
        subprocess.Popen([sys.executable, str(script), str(log), str(n * 2500), "2500",
                          str(project.root / f"ids-{n}")], cwd=project.root,
                         env={"PYTHONPATH": _pythonpath()}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for n in range(8)
    ]
    for producer in producers:
        _, err = producer.communicate(timeout=300)
        assert producer.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err
    ids = [line for n in range(8) for line in (project.root / f"ids-{n}").read_text().split()]
    assert len(ids) == len(set(ids)) == 20000
    done = _Done(tasks.app, ids)
    wait_for(lambda: done() == 20000, 300, interval=0.5)
    counts = starts(log)
    assert set(counts) == set(ids)  # 0 lost
    assert max(counts.values()) == 1  # 0 run twice
