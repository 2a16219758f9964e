"""Calling APIs real Celery code uses, on a real worker on both transports:
``allow_join_result``, ``get(on_message=...)``, ``argsrepr``/``kwargsrepr``,
``Reject``, chord-body errbacks and pydantic models passed by the caller."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from liteq import ChordError, EncodeError, Reject, chord
from liteq.result import denied_join_result
from tests.conftest import TASKS, Project

CALLS = TASKS + '''
import json

from liteq import Reject
from liteq.result import allow_join_result


def _note(path, entry):
    with open(path, "a") as handle:
        handle.write(json.dumps(entry) + "\\n")


@app.task
def waits_for(task_id):
    with allow_join_result():
        return app.AsyncResult(task_id).get(timeout=10)


@app.task
def waits_without_permission(task_id):
    return app.AsyncResult(task_id).get(timeout=10)


@app.task(bind=True)
def steps(self):
    self.update_state(state="PROGRESS", meta={"step": 1})
    time.sleep(0.3)
    self.update_state(state="PROGRESS", meta={"step": 2})
    time.sleep(0.3)
    return "done"


@app.task(bind=True)
def shown(self, card, pin=None):
    return [self.request.argsrepr, self.request.kwargsrepr]


@app.task(bind=True, acks_late=True)
def rejects(self):
    raise Reject("not for us", requeue=False)


@app.task
def on_error(request, exc, traceback, path):
    _note(path, {"kind": "request", "id": request.id, "task": request.task,
                 "exc_type": type(exc).__name__, "exc": str(exc)})


@app.task
def noted_id(task_id, path):
    _note(path, {"kind": "id", "id": task_id})


@app.task
def tsum(values):
    return sum(values)
'''


def _notes(path: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if path.exists():
            found = [json.loads(line) for line in path.read_text().splitlines() if line]
            if len(found) >= count:
                return found
        time.sleep(0.05)
    raise AssertionError(f"{count} note(s) expected in {path}, found {found!r}")


def test_allow_join_result_lets_a_task_wait_for_another(project: Project) -> None:
    tasks = project.module(CALLS)
    project.worker()
    first = tasks.add.delay(20, 22)
    assert first.get(timeout=10) == 42  # one worker process: it is done before
    assert tasks.waits_for.delay(first.id).get(timeout=20) == 42
    # Without allow_join_result the wait is refused, with a message that names it.
    with pytest.raises(RuntimeError, match="allow_join_result"):
        tasks.waits_without_permission.delay(first.id).get(timeout=20)


def test_denied_join_result_refuses_waiting_anywhere(project: Project) -> None:
    tasks = project.module(CALLS)
    res = tasks.add.apply_async((1, 1), ignore_result=False)
    with denied_join_result(), pytest.raises(RuntimeError, match="within a task"):
        res.get(timeout=1)


def test_on_message_is_called_for_each_state_then_the_result(project: Project) -> None:
    tasks = project.module(CALLS)
    project.worker()
    seen: list[dict[str, Any]] = []
    res = tasks.steps.delay()
    assert res.get(timeout=10, on_message=seen.append) == "done"
    assert [(m["status"], m["result"]) for m in seen] == [
        ("PROGRESS", {"step": 1}), ("PROGRESS", {"step": 2}), ("SUCCESS", "done")], seen
    assert {m["task_id"] for m in seen} == {res.id}
    # A result that is ready already: one call, with the final state; a failure's
    # meta holds the exception.
    again: list[dict[str, Any]] = []
    assert res.get(timeout=10, on_message=again.append) == "done"
    assert [m["status"] for m in again] == ["SUCCESS"]
    failed = tasks.fail.delay("no")
    metas: list[dict[str, Any]] = []
    with pytest.raises(ValueError):
        failed.get(timeout=10, on_message=metas.append)
    assert metas[-1]["status"] == "FAILURE" and isinstance(metas[-1]["result"], ValueError)
    assert metas[-1]["traceback"]


def test_argsrepr_and_kwargsrepr_reach_the_request(project: Project) -> None:
    tasks = project.module(CALLS)
    project.worker()
    hidden = tasks.shown.apply_async(("4111 1111 1111 1111",), {"pin": "1234"},
                                     argsrepr="('****',)", kwargsrepr="{'pin': '****'}")
    assert hidden.get(timeout=10) == ["('****',)", "{'pin': '****'}"]
    # Through a signature's options too; without them the arguments' own repr.
    sig = tasks.shown.s("x").set(kwargsrepr="{}")
    assert sig.delay().get(timeout=10) == ["('x',)", "{}"]
    assert tasks.shown.delay("y", pin=1).get(timeout=10) == ["('y',)", "{'pin': 1}"]


def test_reject_without_requeue_is_a_failure_with_errbacks(project: Project) -> None:
    tasks = project.module(CALLS)
    project.worker()
    path = project.root / "errors.jsonl"
    res = tasks.rejects.apply_async(link_error=tasks.on_error.s(str(path)))
    with pytest.raises(Reject):
        res.get(timeout=10)
    assert res.state == "FAILURE"
    (note,) = _notes(path, 1)
    assert note["id"] == res.id and note["exc_type"] == "Reject", note


@pytest.mark.parametrize("errback", ["on_error", "noted_id"])
def test_a_chord_body_errback_gets_the_body(project: Project, errback: str) -> None:
    tasks = project.module(CALLS)
    project.worker()
    path = project.root / "errors.jsonl"
    body = tasks.tsum.s()
    body.link_error(getattr(tasks, errback).s(str(path)))
    res = chord([tasks.add.s(1, 1), tasks.fail.s("header")], body).delay()
    with pytest.raises(ChordError):
        res.get(timeout=10)
    (note,) = _notes(path, 1)
    assert note["id"] == res.id, note  # the body's id, not the failed header task's
    if errback == "on_error":
        assert note["task"] == tasks.tsum.name and note["exc_type"] == "ChordError", note


PYDANTIC = '''
from pydantic import BaseModel, field_validator

from liteq import LiteQ

app = LiteQ(__name__, broker="@BROKER@")
app.conf.accept_content = ["json", "pickle"]


class Point(BaseModel):
    x: int
    y: int


class Odd(BaseModel):
    value: int

    @field_validator("value")
    @classmethod
    def double(cls, value):
        return value * 2  # dumping and validating again gives another model


@app.task(pydantic=True)
def norm(p: Point) -> int:
    return abs(p.x) + abs(p.y)


@app.task(pydantic=True, bind=True)
def bound_norm(self, p: Point, q: Point | None = None) -> int:
    return abs(p.x) + abs(p.y) + (abs(q.x) + abs(q.y) if q is not None else 0)


@app.task(pydantic=True, serializer="pickle")
def pickled(p: Point) -> str:
    return type(p).__name__


@app.task(pydantic=True)
def odd(o: Odd) -> int:
    return o.value


@app.task
def plain(p):
    return p
'''


def test_pydantic_models_from_the_caller_are_sent_as_their_dump(project: Project) -> None:
    pytest.importorskip("pydantic")
    tasks = project.module(PYDANTIC)
    project.worker("-A", tasks.__name__, database="")  # the app's accept_content
    assert tasks.norm.delay(tasks.Point(x=3, y=-4)).get(timeout=10) == 7
    assert tasks.bound_norm.delay(tasks.Point(x=1, y=1),
                                  q=tasks.Point(x=2, y=2)).get(timeout=10) == 6
    assert tasks.norm.s(tasks.Point(x=1, y=2)).delay().get(timeout=10) == 3
    # With pickle the model is sent as it is.
    assert tasks.pickled.delay(tasks.Point(x=0, y=0)).get(timeout=10) == "Point"
    # A model that does not come back equal from its dump is left to the serializer,
    # which refuses it loudly: nothing is sent.
    with pytest.raises(EncodeError):
        tasks.odd.delay(tasks.Odd(value=1))
    # A task without pydantic=True sends what it is given (and pays nothing more).
    assert "apply_async" not in vars(type(tasks.plain))
    assert "apply_async" in vars(type(tasks.norm))
    with pytest.raises(EncodeError):
        tasks.plain.delay(tasks.Point(x=1, y=1))
