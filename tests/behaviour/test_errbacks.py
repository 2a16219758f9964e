"""Errbacks as Celery documents them: a ``link_error`` task taking ``(request, exc,
traceback)`` is called by the worker right after the failure, in the worker process;
a one-argument errback gets the failed task's id in a message of its own."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TASKS, Project

ERRBACKS = TASKS + '''
import json


def _note(path, entry):
    with open(path, "a") as handle:
        handle.write(json.dumps(entry) + "\\n")


@app.task
def on_error(request, exc, traceback, path):
    _note(path, {"kind": "plain", "id": request.id, "task": request.task,
                 "args": list(request.args), "exc_type": type(exc).__name__,
                 "exc": str(exc), "traceback": traceback, "pid": os.getpid()})


@app.task(bind=True)
def bound_on_error(self, request, exc, traceback, path):
    _note(path, {"kind": "bound", "self": self.name, "id": request.id,
                 "exc": str(exc), "pid": os.getpid()})


@app.task
def noted_id(task_id, path):
    _note(path, {"kind": "old", "id": task_id, "pid": os.getpid()})


@app.task
def broken_errback(request, exc, traceback):
    raise RuntimeError("the errback itself broke")


@app.task
def pid():
    return os.getpid()
'''


def notes(path: Path, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The entries errbacks wrote, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            found = [json.loads(line) for line in path.read_text().splitlines() if line]
            if len(found) >= count:
                return found
        time.sleep(0.02)
    raise AssertionError(f"expected {count} errback notes in {path}")


def test_an_errback_gets_the_request_the_exception_and_the_traceback(project: Project) -> None:
    tasks = project.module(ERRBACKS)
    project.worker()
    path = project.root / "errors.jsonl"
    res = tasks.fail.apply_async(("nope",), link_error=tasks.on_error.s(str(path)))
    with pytest.raises(ValueError, match="nope"):
        res.get(timeout=10)
    (note,) = notes(path)
    assert note["kind"] == "plain" and note["id"] == res.id
    assert note["task"] == tasks.fail.name and note["args"] == ["nope"]
    assert note["exc_type"] == "ValueError" and note["exc"] == "nope"
    assert "ValueError: nope" in note["traceback"]
    worker_pid = tasks.pid.delay().get(timeout=10)
    assert note["pid"] == worker_pid  # called in the worker, not as a message elsewhere
    assert res.state == "FAILURE" and isinstance(res.result, ValueError)


def test_a_bound_errback_is_called_the_same_way(project: Project) -> None:
    tasks = project.module(ERRBACKS)
    project.worker()
    path = project.root / "errors.jsonl"
    res = tasks.boom.apply_async(("bang",), link_error=tasks.bound_on_error.s(str(path)))
    with pytest.raises(tasks.Boom):
        res.get(timeout=10)
    (note,) = notes(path)
    assert note == {"kind": "bound", "self": tasks.bound_on_error.name, "id": res.id,
                    "exc": "bang", "pid": note["pid"]}


def test_a_one_argument_errback_gets_the_task_id(project: Project) -> None:
    tasks = project.module(ERRBACKS)
    project.worker()
    path = project.root / "errors.jsonl"
    res = tasks.fail.apply_async(("nope",), link_error=tasks.noted_id.s(str(path)))
    with pytest.raises(ValueError):
        res.get(timeout=10)
    (note,) = notes(path)
    assert note["kind"] == "old" and note["id"] == res.id
    # sent as a message: it has a result of its own, a child of nobody's
    assert tasks.app.AsyncResult(res.id).children == []


def test_on_error_on_a_signature_reaches_the_message(project: Project) -> None:
    tasks = project.module(ERRBACKS)
    project.worker()
    path = project.root / "errors.jsonl"
    sig = tasks.fail.s("via signature")
    returned = sig.on_error(tasks.on_error.s(str(path)))
    # As Celery's Signature.on_error: it returns the signature, so calls chain
    # (link_error is the one that returns the errback).
    assert returned is sig
    sig.link_error(tasks.noted_id.s(str(path)))
    res = sig.delay()
    with pytest.raises(ValueError):
        res.get(timeout=10)
    entries = notes(path, count=2)
    assert sorted(entry["kind"] for entry in entries) == ["old", "plain"]
    assert {entry["id"] for entry in entries} == {res.id}


def test_an_errback_that_raises_is_logged_and_the_failure_kept(project: Project) -> None:
    tasks = project.module(ERRBACKS)
    worker = project.worker()
    path = project.root / "errors.jsonl"
    res = tasks.fail.apply_async(
        ("original",), link_error=[tasks.broken_errback.s(), tasks.on_error.s(str(path))])
    with pytest.raises(ValueError, match="original"):
        res.get(timeout=10)
    (note,) = notes(path)  # the next errback still ran
    assert note["id"] == res.id
    worker.wait_for_output("the errback itself broke", timeout=10)
    assert tasks.add.delay(1, 2).get(timeout=10) == 3  # the worker goes on


EAGER = ERRBACKS.replace('app = LiteQ(__name__, broker="@BROKER@")',
                         'app = LiteQ(__name__, broker="@BROKER@", task_always_eager=True)')


def test_errbacks_run_in_process_in_eager_mode(project: Project) -> None:
    tasks = project.module(EAGER)
    path = project.root / "errors.jsonl"
    res = tasks.fail.apply_async(
        ("eager",), link_error=[tasks.on_error.s(str(path)), tasks.noted_id.s(str(path))])
    assert res.state == "FAILURE"
    entries = notes(path, count=2, timeout=1)
    assert {entry["kind"] for entry in entries} == {"plain", "old"}
    assert {entry["pid"] for entry in entries} == {os.getpid()}
    assert {entry["id"] for entry in entries} == {res.id}
    applied = tasks.boom.apply(("direct",), link_error=tasks.bound_on_error.s(str(path)))
    assert applied.failed()
    assert notes(path, count=3, timeout=1)[-1]["id"] == applied.id
    assert tasks.app.broker.depth() == {}  # nothing went through the broker


def test_apply_runs_every_errback_here_without_the_broker(project: Project) -> None:
    tasks = project.module(ERRBACKS)  # not always eager: apply() alone runs here
    path = project.root / "errors.jsonl"
    res = tasks.fail.apply(("applied",),
                           link_error=[tasks.on_error.s(str(path)), tasks.noted_id.s(str(path))])
    assert res.failed() and isinstance(res.result, ValueError)
    entries = notes(path, count=2, timeout=1)
    assert {entry["kind"] for entry in entries} == {"plain", "old"}
    assert {entry["pid"] for entry in entries} == {os.getpid()}
    assert tasks.app.broker.depth() == {}
