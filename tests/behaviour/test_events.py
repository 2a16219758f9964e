"""Monitoring Guide: ``liteq events`` shows task events, read from the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from liteq.events import EventMonitor
from liteq.testing import wait_for
from tests.conftest import Project, _pythonpath


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _types(events: list[dict[str, Any]], task_id: str) -> list[str]:
    return [event["type"] for event in events if event["uuid"] == task_id]


def test_events_dump_prints_what_the_store_holds(project: Project) -> None:
    tasks = project.module()
    project.worker()
    ok = tasks.add.delay(2, 2)
    bad = tasks.fail.delay("boom")
    assert ok.get(timeout=15) == 4
    bad.get(timeout=15, propagate=False)
    later = tasks.add.apply_async((1, 1), countdown=300)
    done = project.liteq("events", project.location, "--dump", "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert _types(events, ok.id) == ["task-succeeded"]
    (succeeded,) = [e for e in events if e["uuid"] == ok.id]
    assert succeeded["result"] == "4" and succeeded["name"] == tasks.add.name
    assert succeeded["hostname"].startswith("liteq@")
    (failed,) = [e for e in events if e["uuid"] == bad.id]
    assert failed["type"] == "task-failed"
    assert failed["exception"] == "ValueError('boom')" and "ValueError" in failed["traceback"]
    (sent,) = [e for e in events if e["uuid"] == later.id]
    assert sent["type"] == "task-sent" and sent["args"] == [1, 1] and sent["eta"]
    # the plain form: one line per event
    done = project.liteq("events", project.location, "--dump")
    assert done.returncode == 0
    assert f"task succeeded: {tasks.add.name}({ok.id}) result=4" in done.stdout
    assert f"task sent: {tasks.add.name}({later.id}) args=[1, 1]" in done.stdout


def test_events_live_follow_a_task_through_its_life(project: Project) -> None:
    tasks = project.module()
    tasks.app.broker.open()  # events only reads: the store must be there
    out = project.root / "events.jsonl"
    with open(out, "wb") as sink:
        monitor = subprocess.Popen(
            [sys.executable, "-m", "liteq", "events", project.location, "--json",
             "--interval", "0.05"],
            cwd=project.root, stdout=sink, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": _pythonpath()},
        )
    try:
        assert monitor.stderr is not None
        assert b"watching" in monitor.stderr.readline()
        slow = tasks.sleep.delay(1)  # no worker yet: it waits, so it is seen sent
        wait_for(lambda: "task-sent" in _types(_lines(out), slow.id), 10)
        project.worker()
        failing = tasks.fail.delay("nope")
        assert slow.get(timeout=15) == 1
        failing.get(timeout=15, propagate=False)
        wait_for(lambda: "task-failed" in _types(_lines(out), failing.id), 10)
        wait_for(lambda: "task-succeeded" in _types(_lines(out), slow.id), 10)
        assert _types(_lines(out), slow.id) == ["task-sent", "task-received",
                                                "task-succeeded"]
        received = [e for e in _lines(out) if e["uuid"] == slow.id][1]
        assert received["hostname"].startswith("liteq@")
    finally:
        os.kill(monitor.pid, signal.SIGTERM)  # stopped by its pid only
        code = monitor.wait(15)
        if monitor.stderr is not None:
            monitor.stderr.close()
    assert code == 0


def test_event_monitor_is_reusable_from_python(project: Project) -> None:
    tasks = project.module()
    monitor = EventMonitor(tasks.app)
    assert monitor.poll() == []  # nothing happened since it was made
    res = tasks.add.delay(3, 4)
    events = monitor.poll()
    assert [(e["type"], e["uuid"]) for e in events] == [("task-sent", res.id)]
    assert events[0]["args"] == [3, 4] and events[0]["queue"] == "celery"
    project.worker()
    assert res.get(timeout=15) == 7
    seen: list[dict[str, Any]] = []
    wait_for(lambda: seen.extend(monitor.poll()) or
             "task-succeeded" in _types(seen, res.id), 10)
    res.revoke()
    revoked = tasks.add.apply_async((1, 2), countdown=300)
    revoked.revoke()
    wait_for(lambda: seen.extend(monitor.poll()) or
             "task-revoked" in _types(seen, revoked.id), 10)
    assert monitor.poll() == []  # each event once


def test_events_on_a_missing_app_is_one_clear_line(project: Project) -> None:
    done = project.liteq("-A", "no_such_module", "events", "--dump")
    assert done.returncode == 1 and "no_such_module" in done.stderr
    assert "Traceback" not in done.stderr
