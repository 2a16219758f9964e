"""Celery's "Next Steps" page, pasted with only the import and the broker URL changed.

docs/getting-started/next-steps.rst (Celery 5.7): the ``proj`` package of
examples/next-steps (``celery -A proj worker -l INFO``), calling tasks, states, the
canvas primitives, routing with ``-Q hipri,celery``, remote control (``inspect``,
``status``, ``control``, ``events --dump``) and ``celery multi``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from liteq import AsyncResult, chain, chord, group
from liteq.testing import wait_for
from tests.conformance.conftest import Page, PageFactory
from tests.conftest import _pythonpath

# examples/next-steps/proj, verbatim but for the import and the broker URL.
PROJ = {
    "proj/__init__.py": "",
    "proj/celery.py": """
        from liteq import Celery

        app = Celery('proj',
                     broker='@BROKER@',
                     backend='rpc://',
                     include=['proj.tasks'])

        # Optional configuration, see the application user guide.
        app.conf.update(
            result_expires=3600,
        )

        if __name__ == '__main__':
            app.start()
        """,
    "proj/tasks.py": """
        from .celery import app


        @app.task
        def add(x, y):
            return x + y


        @app.task
        def mul(x, y):
            return x * y


        @app.task
        def xsum(numbers):
            return sum(numbers)
        """,
}


@pytest.fixture
def proj(page: PageFactory) -> Page:
    # $ celery -A proj worker -Q hipri,celery   (the page's routing section)
    return page(PROJ, "-A", "proj", "-l", "INFO", "-Q", "hipri,celery")


def test_calling_tasks(proj: Page) -> None:
    from_tasks = proj.module("proj.tasks")
    add = from_tasks.add
    assert add.delay(2, 2).get(timeout=10) == 4
    assert add.apply_async((2, 2)).get(timeout=10) == 4
    # "Applying the task directly will execute the task in the current process"
    assert add(2, 2) == 4
    res = add.delay(2, 2)
    assert isinstance(res, AsyncResult)
    assert isinstance(res.id, str) and res.id, f"res.id is {res.id!r}"
    assert res.get(timeout=10) == 4


def test_a_failed_task_propagates_and_reports_its_state(proj: Page) -> None:
    add = proj.module("proj.tasks").add
    res = add.delay(2, "2")
    with pytest.raises(TypeError, match=r"unsupported operand type\(s\) for \+: 'int' and 'str'"):
        res.get(timeout=10)
    returned = res.get(propagate=False)
    assert isinstance(returned, TypeError), f"get(propagate=False) returned {returned!r}"
    assert str(returned) == "unsupported operand type(s) for +: 'int' and 'str'"
    assert res.failed() is True
    assert res.successful() is False
    assert res.state == "FAILURE"


def test_an_unknown_id_is_pending(proj: Page) -> None:
    app = proj.module("proj.celery").app
    res = app.AsyncResult("this-id-does-not-exist")
    assert res.state == "PENDING"


def test_queue_and_countdown_options_route_the_message(proj: Page) -> None:
    """``add.apply_async((2, 2), queue='lopri', countdown=10)``: no worker reads lopri."""
    tasks = proj.module("proj.tasks")
    res = tasks.add.apply_async((2, 2), queue="lopri", countdown=10)
    depth = tasks.app.broker.depth()
    assert "lopri" in depth and depth["lopri"].total == 1, depth
    assert res.state == "PENDING"


def test_signatures(proj: Page) -> None:
    add = proj.module("proj.tasks").add
    # The page prints ``tasks.add(2, 2)``; Celery 5.7 really prints the task's full name
    # (``proj.tasks.add(2, 2)``), which is what we assert.
    assert repr(add.signature((2, 2), countdown=10)) == "proj.tasks.add(2, 2)"
    assert add.signature((2, 2), countdown=10).options == {"countdown": 10}
    sig = add.s(2, 2).set(countdown=10)
    assert repr(sig) == "proj.tasks.add(2, 2)"
    assert sig.options == {"countdown": 10}


def test_partial_signatures(proj: Page) -> None:
    add = proj.module("proj.tasks").add
    s1 = add.s(2, 2)
    assert s1.delay().get(timeout=10) == 4
    s2 = add.s(2)
    assert s2.delay(8).get(timeout=10) == 10, "add.s(2).delay(8) is add(8, 2)"
    # >>> s3 = add.s(2, 2, debug=True)
    # >>> s3.delay(debug=False)   # debug is now False.
    # The page's add takes no ``debug``: real Celery checks the arguments when sending
    # and raises TypeError("add() got an unexpected keyword argument 'debug'").
    s3 = add.s(2, 2, debug=True)
    with pytest.raises(TypeError, match="debug"):
        s3.delay(debug=False)


def test_groups(proj: Page) -> None:
    add = proj.module("proj.tasks").add
    assert group(add.s(i, i) for i in range(10))().get(timeout=10) == [
        0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    g = group(add.s(i) for i in range(10))
    assert g(10).get(timeout=10) == [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]


def test_chains(proj: Page) -> None:
    tasks = proj.module("proj.tasks")
    add, mul = tasks.add, tasks.mul
    # (4 + 4) * 8
    assert chain(add.s(4, 4) | mul.s(8))().get(timeout=10) == 64, "chain(a | b)()"
    g = chain(add.s(4) | mul.s(8))
    assert g(4).get(timeout=10) == 64, "chain(add.s(4) | mul.s(8))(4)"
    assert (add.s(4, 4) | mul.s(8))().get(timeout=10) == 64


def test_chords(proj: Page) -> None:
    tasks = proj.module("proj.tasks")
    add, xsum = tasks.add, tasks.xsum
    assert chord((add.s(i, i) for i in range(10)), xsum.s())().get(timeout=10) == 90
    # "A group chained to another task will be automatically converted to a chord"
    assert (group(add.s(i, i) for i in range(10)) | xsum.s())().get(timeout=10) == 90


def test_routing(proj: Page) -> None:
    tasks = proj.module("proj.tasks")
    tasks.app.conf.update(
        task_routes={
            'proj.tasks.add': {'queue': 'hipri'},
        },
    )
    res = tasks.add.delay(2, 2)
    assert res.get(timeout=10) == 4
    assert tasks.add.apply_async((2, 2), queue="hipri").get(timeout=10) == 4
    assert tasks.app.conf.task_default_queue == "celery", "the default queue is 'celery'"


def test_remote_control_inspect_and_status(proj: Page) -> None:
    # $ celery -A proj inspect active
    active = proj.liteq("-A", "proj", "inspect", "active")
    assert active.returncode == 0, active.stderr
    node = proj.module("proj.celery").app.control.ping()
    assert node, "app.control.ping() found no worker"
    name = next(iter(node[0])) if isinstance(node, list) else next(iter(node))
    # $ celery -A proj inspect active --destination=celery@example.com
    one = proj.liteq("-A", "proj", "inspect", "active", f"--destination={name}")
    assert one.returncode == 0, one.stderr
    assert name in one.stdout, one.stdout
    # $ celery -A proj status
    status = proj.liteq("-A", "proj", "status")
    assert status.returncode == 0, status.stderr
    assert "1 node online." in status.stdout, status.stdout


def test_inspect_registered_and_scheduled(proj: Page) -> None:
    """``inspect registered`` lists every task the worker can run (the Tasks page points
    to it); ``inspect scheduled`` lists tasks with an ETA (issue 10, item 7)."""
    registered = proj.liteq("-A", "proj", "inspect", "registered")
    assert registered.returncode == 0, registered.stderr
    for name in ("proj.tasks.add", "proj.tasks.mul", "proj.tasks.xsum"):
        assert f"* {name}" in registered.stdout, registered.stdout
    tasks = proj.module("proj.tasks")
    later = tasks.add.apply_async((2, 2), countdown=30)
    try:
        def scheduled() -> bool:
            return later.id in str(tasks.app.control.inspect().scheduled() or {})

        wait_for(scheduled, 10, message="the countdown task in inspect().scheduled()")
    finally:
        tasks.app.control.revoke(later.id)


def test_remote_control_events_dump(proj: Page) -> None:
    # $ celery -A proj control enable_events
    enable = proj.liteq("-A", "proj", "control", "enable_events")
    assert enable.returncode == 0, enable.stderr
    # $ celery -A proj events --dump
    # Celery's --dump streams events until Ctrl-C; in liteq, `liteq events` streams and
    # `--dump` prints what the store holds once and exits (a deliberate difference, in
    # the README's "Coming from Celery"). Both are checked.
    out = proj.root / "events.out"
    with open(out, "wb") as handle:
        follower = subprocess.Popen([sys.executable, "-m", "liteq", "-A", "proj", "events"],
                                    cwd=proj.root, stdout=handle, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONPATH": _pythonpath()})
    try:
        wait_for(lambda: "watching" in out.read_text(), 10, message="liteq events started")
        res = proj.module("proj.tasks").add.delay(21, 21)
        assert res.get(timeout=10) == 42
        # Celery 5.7 prints, per event, a line like:
        # celery@vm [2026-...] task succeeded: proj.tasks.add(<id>) args=(21, 21) ...
        wait_for(lambda: any("task succeeded" in line and res.id in line
                             for line in out.read_text().splitlines()), 10,
                 message="the task's succeeded event in liteq events")
    finally:
        follower.send_signal(signal.SIGTERM)  # by pid
        follower.wait(10)
    dump = proj.liteq("-A", "proj", "events", "--dump")
    assert dump.returncode == 0, dump.stderr
    assert any("task succeeded" in line and res.id in line
               for line in dump.stdout.splitlines()), dump.stdout
    # $ celery -A proj control disable_events
    disable = proj.liteq("-A", "proj", "control", "disable_events")
    assert disable.returncode == 0, disable.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_multi_start_and_stopwait(proj: Page) -> None:
    # $ mkdir -p /var/run/celery /var/log/celery
    # $ celery multi start w1 -A proj -l INFO --pidfile=/var/run/celery/%n.pid \
    #                                         --logfile=/var/log/celery/%n%I.log
    (proj.root / "run").mkdir(exist_ok=True)
    (proj.root / "log").mkdir(exist_ok=True)
    files = (f"--pidfile={proj.root}/run/%n.pid", f"--logfile={proj.root}/log/%n%I.log")
    start = proj.liteq("multi", "start", "w1", "-A", "proj", "-l", "INFO", *files)
    assert start.returncode == 0, start.stdout + start.stderr
    pidfile = proj.root / "run" / "w1.pid"
    wait_for(pidfile.exists, 15, message="w1's pidfile")
    pid = int(pidfile.read_text().strip())
    try:
        assert _alive(pid), "the node of multi start is not running"
        # $ celery multi stopwait w1 -A proj -l INFO
        stop = proj.liteq("multi", "stopwait", "w1", "-A", "proj", "-l", "INFO", *files)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        wait_for(lambda: not _alive(pid), 15, message="w1 stopped")
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)  # by pid, only if stopwait failed


def test_multi_per_node_options(proj: Page) -> None:
    """``celery multi start 3 -A proj -Q:1-2 images,video -Q:3 data`` (issue 10, item 7)."""
    host = socket.gethostname()
    show = proj.liteq("multi", "show", "3", "-A", "proj", "-l", "INFO",
                      "-Q:1-2", "images,video", "-Q:3", "data")
    assert show.returncode == 0, show.stderr
    lines = [line for line in show.stdout.splitlines() if "worker" in line]
    assert len(lines) == 3, show.stdout
    # Celery names the nodes celery1@host, celery2@host, ...; the prefix may be liteq's.
    for number, queues in ((1, "images,video"), (2, "images,video"), (3, "data")):
        line = next((line for line in lines if re.search(rf"-n \w*{number}@", line)), "")
        assert f"-Q {queues}" in line, f"node {number}: {line!r}"
    (proj.root / "nodes").mkdir(exist_ok=True)
    files = (f"--pidfile={proj.root}/nodes/%n.pid", f"--logfile={proj.root}/nodes/%n.log")
    start = proj.liteq("multi", "start", "3", "-A", "proj", "-l", "INFO", "-P", "solo",
                       "-Q:1-2", "images,video", "-Q:3", "data", *files)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        app = proj.module("proj.celery").app

        def queues() -> dict[str, list[str]] | None:
            replies = app.control.inspect().active_queues() or {}
            found = {}
            for node, qs in replies.items():
                numbered = re.fullmatch(rf"\w*?(\d)@{re.escape(host)}", node)
                if numbered:
                    found[numbered.group(1)] = sorted(q["name"] for q in qs)
            return found if len(found) == 3 else None

        found = wait_for(queues, 20, message="three multi nodes answering active_queues")
        assert found == {"1": ["images", "video"], "2": ["images", "video"],
                         "3": ["data"]}, found
    finally:
        stop = proj.liteq("multi", "stopwait", "3", "-A", "proj", "-l", "INFO", "-P", "solo",
                          "-Q:1-2", "images,video", "-Q:3", "data", *files)
        for pidfile in (proj.root / "nodes").glob("*.pid"):
            pid = int(pidfile.read_text().strip() or 0)
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)  # by pid, only what stopwait left behind
    assert stop.returncode == 0, stop.stdout + stop.stderr
